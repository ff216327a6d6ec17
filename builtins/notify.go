package builtins

import (
	"context"
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/engine"
)

// Notify is the notify module's own part: notify.log. The paging channels
// (notify.telegram, notify.webhook, ...) register themselves from package
// builtins/notify and are merged into the same module by the loader.
//
//	def log(prefix=None):
//	    A channel that writes each page to Talon's log at info level, prefixed with
//	    prefix. It never fails and needs nothing configured: the default policy pages here.
//	    prefix: text put before each page (default "")
var Notify = &starlarkstruct.Module{Name: "notify", Members: starlark.StringDict{
	"log": starlark.NewBuiltin("notify.log", notifyLog),
}}

// LogPager is the notify.log channel.
type LogPager struct{ Prefix string }

var (
	_ engine.Pager   = (*LogPager)(nil)
	_ starlark.Value = (*LogPager)(nil)
)

func (p *LogPager) String() string        { return "<notify.log>" }
func (p *LogPager) Type() string          { return "notify.log" }
func (p *LogPager) Freeze()               {}
func (p *LogPager) Truth() starlark.Bool  { return starlark.True }
func (p *LogPager) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: notify.log") }

// Describe implements engine.Action.
func (p *LogPager) Describe() string { return "notify.log" }

// Programs implements engine.Action.
func (p *LogPager) Programs() []string { return nil }

// Channel implements engine.Pager.
func (p *LogPager) Channel() string { return "log" }

// Destination is the log, with its prefix.
func (p *LogPager) Destination() string { return "log\x00" + p.Prefix }

// Run sends the rung's message, or the incident's summary when it has none.
func (p *LogPager) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	return engine.RunPager(ctx, p, env)
}

// Send implements engine.Pager: it writes msg through env.Log.
func (p *LogPager) Send(_ context.Context, env *engine.ActionEnv, msg engine.Message) error {
	if env.Log == nil {
		return fmt.Errorf("notify.log: no logger in this environment")
	}
	env.Log(p.Prefix+msg.Text, "channel", "log", "kind", msg.Kind, "incident", msg.Incident)
	return nil
}

func notifyLog(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var prefix string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "prefix??", &prefix); err != nil {
		return nil, err
	}
	return &LogPager{Prefix: prefix}, nil
}
