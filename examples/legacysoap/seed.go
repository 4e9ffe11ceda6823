package main

import "time"

// seedParts returns the fake ERP's catalogue: 36 parts of a plant's
// maintenance store, last modified over the years.
func seedParts() []Part {
	suppliers := map[string]Supplier{
		"Fasteners":  {Code: "S-104", Name: "Kessler Normteile GmbH"},
		"Bearings":   {Code: "S-211", Name: "Nordlager AB"},
		"Seals":      {Code: "S-318", Name: "Hydrotec S.p.A."},
		"Hydraulics": {Code: "S-318", Name: "Hydrotec S.p.A."},
		"Pneumatics": {Code: "S-517", Name: "Pneumax Systems"},
		"Electrical": {Code: "S-402", Name: "Brightwire Electrical Ltd"},
		"Drives":     {Code: "S-630", Name: "Atlas Drive Components"},
	}
	rows := []struct{ no, category, description, uom, price string }{
		{"P-1001", "Fasteners", "Hex head bolt M8 x 40, zinc plated, DIN 933, grade 8.8", "EA", "0.14"},
		{"P-1002", "Fasteners", "Hex nut M8, zinc plated, DIN 934", "EA", "0.04"},
		{"P-1003", "Fasteners", "Socket head cap screw M6 x 20, A2 stainless steel, DIN 912", "EA", "0.22"},
		{"P-1004", "Fasteners", "Flat washer M10, A4 stainless steel, DIN 125", "EA", "0.05"},
		{"P-1005", "Fasteners", "Nyloc lock nut M12, zinc plated, DIN 985", "EA", "0.11"},
		{"P-1006", "Fasteners", "Threaded rod M10 x 1000, galvanised steel", "EA", "2.35"},
		{"P-1007", "Bearings", "Deep groove ball bearing 6204-2RS, 20 x 47 x 14 mm, sealed", "EA", "3.80"},
		{"P-1008", "Bearings", "Deep groove ball bearing 6205-ZZ, stainless steel, shielded", "EA", "9.40"},
		{"P-1009", "Bearings", "Pillow block bearing UCP206, cast iron housing, 30 mm bore", "EA", "18.60"},
		{"P-1010", "Bearings", "Tapered roller bearing 30206, for gearbox output shafts", "EA", "14.20"},
		{"P-1011", "Bearings", "Needle roller bearing HK2016, drawn cup", "EA", "2.10"},
		{"P-1012", "Bearings", "Linear ball bearing LM20UU, for 20 mm hardened shafts", "EA", "4.75"},
		{"P-1013", "Seals", "Radial shaft seal 35 x 52 x 7, NBR, double lip", "EA", "1.90"},
		{"P-1014", "Seals", "O-ring 50 x 3 mm, FKM (Viton), for hydraulic fittings", "EA", "0.65"},
		{"P-1015", "Seals", "Hydraulic rod seal 40 x 50 x 6, polyurethane", "EA", "3.10"},
		{"P-1016", "Seals", "Gasket sheet 1000 x 1500 x 2 mm, aramid fibre, oil resistant", "SHT", "48.00"},
		{"P-1017", "Hydraulics", `Hydraulic hose 1/2" 2SN, two steel wire braids, 350 bar`, "M", "11.40"},
		{"P-1018", "Hydraulics", `Quick coupling 1/2" ISO 7241-A, steel, push to connect`, "EA", "16.90"},
		{"P-1019", "Hydraulics", "Gear pump 8 cc/rev, 250 bar, SAE A flange", "EA", "212.00"},
		{"P-1020", "Hydraulics", "Directional control valve 4/3, CETOP 3, 24 V DC", "EA", "168.50"},
		{"P-1021", "Hydraulics", "Return line filter element, 10 micron, glass fibre", "EA", "27.30"},
		{"P-1022", "Hydraulics", "Hydraulic oil HLP 46, mineral, 20 l drum", "DR", "64.00"},
		{"P-1023", "Pneumatics", "Pneumatic cylinder ISO 15552, bore 50, stroke 200 mm", "EA", "96.00"},
		{"P-1024", "Pneumatics", "Solenoid valve 5/2, G1/4, 24 V DC, pilot operated", "EA", "54.20"},
		{"P-1025", "Pneumatics", "Filter regulator G1/2, 0.5 to 10 bar, automatic drain", "EA", "38.70"},
		{"P-1026", "Pneumatics", "Push-in fitting, straight, 8 mm x G1/4, nickel plated brass", "EA", "1.45"},
		{"P-1027", "Pneumatics", "Polyurethane tubing 8 x 5.5 mm, blue, 50 m roll", "RL", "29.90"},
		{"P-1028", "Electrical", "Inductive proximity sensor M18, PNP NO, 8 mm range", "EA", "22.40"},
		{"P-1029", "Electrical", "Contactor, 3 poles, 18 A, 24 V DC coil", "EA", "31.60"},
		{"P-1030", "Electrical", "Motor protection circuit breaker, 4 to 6.3 A", "EA", "44.80"},
		{"P-1031", "Electrical", "Control cable 4G1.5 mm², PUR sheath, drag chain rated", "M", "3.20"},
		{"P-1032", "Electrical", "Emergency stop push button, 40 mm mushroom head, twist release", "EA", "17.50"},
		{"P-1033", "Drives", "V-belt SPA 1250, wrapped, oil and heat resistant", "EA", "8.90"},
		{"P-1034", "Drives", "Roller chain 08B-1 simplex, 5 m, stainless steel", "EA", "71.00"},
		{"P-1035", "Drives", "Chain sprocket 08B-1, 19 teeth, pilot bore", "EA", "12.60"},
		{"P-1036", "Drives", "Flexible jaw coupling, 24 mm bores, 92 Shore A spider", "EA", "19.80"},
	}
	since := time.Date(2009, 3, 2, 8, 0, 0, 0, time.UTC)
	parts := make([]Part, len(rows))
	for i, r := range rows {
		parts[i] = Part{
			PartNo:        r.no,
			Description:   r.description,
			Category:      r.category,
			UnitOfMeasure: r.uom,
			Price:         Price{Currency: "EUR", Amount: r.price},
			Supplier:      suppliers[r.category],
			Stock: []Bin{
				{Warehouse: "DUS", Quantity: (i*37 + 12) % 500},
				{Warehouse: "LYO", Quantity: (i*53 + 5) % 300},
			},
			LastModified: since.Add(time.Duration(i) * 1931 * time.Hour),
		}
	}
	return parts
}
