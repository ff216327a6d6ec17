package builtins

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/effect"
)

// LegacyServicesFile is where the predecessor kept its services file,
// relative to the home directory.
const LegacyServicesFile = ".joelclaw/talon/services.toml"

// checkPaging warns when the policy, as configured, can reach nobody: no
// ladder, a ladder that only writes to the log (the default policy on a
// config that names no channel), pages that no probe's failure may cause,
// and channels whose secret or chat id is missing.
func (c *collector) checkPaging(environ []string, probes []*engine.Probe) {
	if !c.ladderSet || len(c.ladder) == 0 {
		c.warn("%s: the policy declares no ladder: failures are shown on /health and in talon status, but nothing acts on them and nobody is paged", EntryFile)
		return
	}
	person := false
	for _, r := range c.ladder {
		for _, a := range r.Do {
			if p, ok := a.(engine.Pager); ok && p.Channel() != "log" {
				person = true
			}
			if h, ok := a.(interface{ Secrets() []*secret.Secret }); ok {
				for _, s := range h.Secrets() {
					if why := s.Unavailable(environ); why != "" {
						c.warn("%s: rung %q cannot page through %s: %s", r.Pos, r.Name, a.(engine.Pager).Channel(), why)
					}
				}
			}
		}
	}
	switch {
	case !person:
		c.warn("%s: no rung of the ladder pages a person (notify.log only writes to talon's log): set sos_telegram_chat_id or sos_recipient in [escalation] of config.toml, or add a notify.* channel to a rung", c.ladderPos)
	case !slices.ContainsFunc(probes, func(p *engine.Probe) bool { return p.Critical }):
		c.warn("%s: the ladder pages, but no probe's failure may page (on_failure = \"page\", or critical = True): its pages are never sent", c.ladderPos)
	}
	e := c.cfg.Escalation
	switch {
	case e.SOSTelegramChatID != "" && e.SOSTelegramSecretName == "":
		c.warn("%s", c.cfg.ErrorAt("escalation.sos_telegram_chat_id", "escalation.sos_telegram_chat_id is set but sos_telegram_secret_name is empty: no Telegram page can be sent; name the secret that holds the bot token").Error())
	case e.SOSTelegramChatID == "" && c.cfg.IsSet("escalation.sos_telegram_secret_name") && e.SOSTelegramSecretName != "":
		c.warn("%s", c.cfg.ErrorAt("escalation.sos_telegram_secret_name", "escalation.sos_telegram_secret_name is set but sos_telegram_chat_id is empty: no Telegram page is sent; set the chat id").Error())
	}
}

// checkServices warns about a services file that is named but not read:
// one config.toml names that the policy never reads, and the predecessor's
// own file, present but not used (its services would silently go
// unwatched after a migration).
func (c *collector) checkServices(environ []string) {
	if len(c.servicesRead) == 0 && c.cfg.IsSet("services_file") {
		c.warn("%s", c.cfg.ErrorAt("services_file", "services_file is set, but the policy does not call services(): the services in %s are not watched", c.cfg.ServicesFile).Error())
	}
	home := homeOf(environ)
	if home == "" {
		return
	}
	legacy := filepath.Join(home, LegacyServicesFile)
	if _, err := os.Stat(legacy); err != nil {
		return
	}
	if slices.Contains(c.servicesRead, config.Canonical(legacy)) {
		return
	}
	c.warn("the predecessor's services file %s exists, but this policy does not read it: its services are not watched; to keep them, set services_file = %q in config.toml (the schema is the same)", legacy, legacy)
}

// checkWorker warns when the worker's program does not resolve on the
// child PATH: under launchd's minimal PATH, a worker in ~/.bun/bin never
// starts (the class of bug that once hid a broken recovery for six days).
func (c *collector) checkWorker() {
	w := c.cfg.Worker
	if !w.Enabled || len(w.Command) == 0 {
		return
	}
	prog := w.Command[0]
	if strings.Contains(prog, "/") && !filepath.IsAbs(prog) && w.Dir != "" {
		prog = filepath.Join(w.Dir, prog) // as the supervisor runs it
	}
	if _, err := effect.LookPath(prog, c.cfg.PathList()); err != nil {
		msg := "worker.command: program %q not found on PATH; install it or add its directory to path in config.toml"
		if strings.Contains(prog, "/") {
			msg = "worker.command: program %q cannot run: " + err.Error()
		}
		c.warn("%s", c.cfg.ErrorAt("worker.command", msg, w.Command[0]).Error())
	}
}

// homeOf is HOME in environ, else the process's home directory.
func homeOf(environ []string) string {
	for i := len(environ) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(environ[i], "HOME="); ok {
			return v
		}
	}
	h, _ := os.UserHomeDir()
	return h
}
