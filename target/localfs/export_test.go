package localfs

// WithHooks calls beforeFile before each file write ("write") or deletion
// ("delete"), and afterBatch once a batch of file actions is applied; an
// error from either fails the batch there. Either may be nil.
func WithHooks(beforeFile func(op, name string) error, afterBatch func() error) Option {
	return func(o *options) {
		o.hooks = hooks{beforeFile: beforeFile, afterBatch: afterBatch}
	}
}

// CheckName exposes checkName to the tests.
func CheckName(name string) error { return checkName(name) }
