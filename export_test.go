package tidemark

import "context"

// SetWriteHooks sets functions called before each batch's precommit, apply
// and commit; an error from one aborts the update there, as a crash would.
func SetWriteHooks(o *Options, beforePrecommit, beforeApply, beforeCommit func(context.Context) error) {
	o.hooks.BeforePrecommit = beforePrecommit
	o.hooks.BeforeApply = beforeApply
	o.hooks.BeforeCommit = beforeCommit
}
