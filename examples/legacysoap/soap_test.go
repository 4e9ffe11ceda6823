package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

// envelopes are answers of GetPart as services write them, good and bad:
// the tests' cases and the fuzz target's seeds.
func envelopes(t testing.TB) map[string]string {
	part, err := marshalEnvelope(getPartResponse{Part: seedParts()[7]})
	require.NoError(t, err)
	return map[string]string{
		"prefixed, as the fake writes": string(part),
		"default namespaces": `<Envelope xmlns="` + soapNS + `"><Body><GetPartResponse xmlns="` + partsNS + `">` +
			`<Part><PartNo>P-1</PartNo><Stock><Bin warehouse="DUS" qty=" 7"/></Stock><LastModified>2024-05-06T09:00:00+02:00</LastModified></Part>` +
			`</GetPartResponse></Body></Envelope>`,
		"other prefixes": `<s:Envelope xmlns:s="` + soapNS + `"><s:Header/><s:Body><p:GetPartResponse xmlns:p="` + partsNS + `">` +
			`<p:Part><p:PartNo>P-2</p:PartNo><p:Price currency="EUR">1.50</p:Price></p:Part></p:GetPartResponse></s:Body></s:Envelope>`,
		"a fault": `<soap:Envelope xmlns:soap="` + soapNS + `"><soap:Body><soap:Fault><faultcode>soap:Server.Busy</faultcode>` +
			`<faultstring>busy &amp; slow</faultstring></soap:Fault></soap:Body></soap:Envelope>`,
		"SOAP 1.2":                 `<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body/></env:Envelope>`,
		"an answer of another API": `<Envelope xmlns="` + soapNS + `"><Body><GetPartResponse xmlns="urn:other"/></Body></Envelope>`,
		"torn":                     string(part[:len(part)/2]),
		"not XML":                  `{"PartNo": "P-1"}`,
	}
}

func TestParseEnvelope(t *testing.T) {
	t.Parallel()
	envs := envelopes(t)
	for name, tc := range map[string]struct {
		want      string // the part number parsed
		wantFault string // the fault's Code
		wantErr   string
	}{
		"prefixed, as the fake writes": {want: "P-1008"},
		"default namespaces":           {want: "P-1"},
		"other prefixes":               {want: "P-2"},
		"a fault":                      {wantFault: "Server.Busy", wantErr: "SOAP fault soap:Server.Busy: busy & slow"},
		"SOAP 1.2":                     {wantErr: "expected element <Envelope> in name space http://schemas.xmlsoap.org/soap/envelope/ but have http://www.w3.org/2003/05/soap-envelope"},
		"an answer of another API":     {wantErr: "the SOAP body holds no answer"},
		"torn":                         {wantErr: "XML syntax error on line 2: unexpected EOF"},
		"not XML":                      {wantErr: "EOF"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseEnvelope[getPartResponse](strings.NewReader(envs[name]))
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				require.Nil(t, got)
				var f *Fault
				require.Equal(t, tc.wantFault != "", errors.As(err, &f))
				if f != nil {
					require.Equal(t, tc.wantFault, f.Code())
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got.Part.PartNo)
		})
	}
}

// FuzzParseEnvelope checks that no answer makes the parser panic, that it
// returns a value, a fault or an error, and that a value parsed is sent
// and parsed back the same.
func FuzzParseEnvelope(f *testing.F) {
	for _, env := range envelopes(f) {
		f.Add(env)
	}
	f.Fuzz(func(t *testing.T, data string) {
		got, err := parseEnvelope[getPartResponse](strings.NewReader(data))
		var fault *Fault
		switch {
		case errors.As(err, &fault):
			require.Nil(t, got)
			fault.Code()
		case err != nil:
			require.Nil(t, got)
		default:
			require.NotNil(t, got)
			b, err := marshalEnvelope(got)
			require.NoError(t, err)
			again, err := parseEnvelope[getPartResponse](bytes.NewReader(b))
			require.NoError(t, err)
			require.Empty(t, cmp.Diff(got, again))
		}
	})
}
