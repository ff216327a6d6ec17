package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/text"
)

func init() {
	probe.Register(probe.Builtin{Name: "notify.telegram", Fn: telegramBuiltin, Doc: `def telegram(chat_id, token, *, base_url="https://api.telegram.org", timeout="15s", silent=False):
Pages through a Telegram bot (Bot API sendMessage over HTTPS). The token travels only in the
request to Telegram: never in a process's arguments, a log line or a dry-run intent.
Delivered only when Telegram answers HTTP 200 with "ok": true.
chat_id: the chat to write to: a number (negative for groups) or "@channel"
token: the bot token, normally secret("telegram_bot_token"); a plain string also works
base_url: the Bot API server, for a local Bot API server or a test
timeout: deadline of the request, e.g. "15s" (a lease of the token has its own 10s)
silent: send without a notification sound`})
}

// DefaultTelegramURL is the public Bot API server.
const DefaultTelegramURL = "https://api.telegram.org"

// telegramMaxText is Telegram's limit on a message's length.
const telegramMaxText = 4096

// Telegram pages a Telegram chat through a bot.
type Telegram struct {
	value
	ChatID  string
	Token   *secret.Secret
	BaseURL string // without a trailing slash
	Timeout time.Duration
	Silent  bool
}

var (
	_ engine.Pager   = (*Telegram)(nil)
	_ starlark.Value = (*Telegram)(nil)
)

// badTokenReason is why a token is refused; errors never quote the token.
const badTokenReason = "it has whitespace, a control character or one of / ? # %"

// badToken reports what cannot be a bot token, which travels in the URL's path.
func badToken(token string) bool {
	return strings.IndexFunc(token, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune("/?#%", r)
	}) >= 0
}

// NewTelegram validates and builds a Telegram channel. A plain token
// (secret.Literal) is checked here, any other when a page is sent. timeout
// must be positive.
func NewTelegram(chatID string, token *secret.Secret, baseURL string, timeout time.Duration, silent bool) (*Telegram, error) {
	if chatID == "" {
		return nil, errors.New("chat_id is empty")
	}
	if strings.IndexFunc(chatID, unicode.IsSpace) >= 0 {
		return nil, fmt.Errorf("chat_id %q has whitespace in it", chatID)
	}
	if token == nil {
		return nil, errors.New("token is missing")
	}
	if v, ok := token.Plain(); ok && badToken(v) {
		return nil, errors.New("token is not a bot token: " + badTokenReason)
	}
	if baseURL == "" {
		baseURL = DefaultTelegramURL
	}
	u, err := checkURL(baseURL)
	if err != nil {
		return nil, fmt.Errorf("base_url: %v", err)
	}
	if u.RawQuery != "" || u.User != nil {
		return nil, errors.New("base_url must not carry a query or credentials")
	}
	if err := checkTimeout(timeout, "15s"); err != nil {
		return nil, err
	}
	return &Telegram{value: value{kind: "notify.telegram"}, ChatID: chatID, Token: token,
		BaseURL: strings.TrimRight(baseURL, "/"), Timeout: timeout, Silent: silent}, nil
}

func (t *Telegram) String() string { return t.Describe() }

// GoString is Describe too, so %#v shows no URL or credential.
func (t *Telegram) GoString() string { return t.Describe() }

// Describe names the chat and the token's secret, never its value.
func (t *Telegram) Describe() string {
	return fmt.Sprintf("notify.telegram chat %s (token %s)", t.ChatID, t.Token)
}

// Channel is "telegram:CHATID".
func (t *Telegram) Channel() string { return "telegram:" + t.ChatID }

// Destination is the API, the chat and where the bot's token comes from.
func (t *Telegram) Destination() string {
	return t.BaseURL + "\x00" + t.ChatID + "\x00" + t.Token.Name() + "\x00" + t.Token.Origin()
}

// Programs are the token's lease command, if any; the request itself is in-process.
func (t *Telegram) Programs() []string { return t.Token.Programs() }

// Secrets lists the secrets a page needs, for talon validate.
func (t *Telegram) Secrets() []*secret.Secret { return []*secret.Secret{t.Token} }

// Run sends env.Message.
func (t *Telegram) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	return run(ctx, t, env)
}

// telegramAnswer is the envelope of every Bot API answer.
type telegramAnswer struct {
	OK          bool            `json:"ok"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Result      json.RawMessage `json:"result"`
}

// Send posts msg to the chat with sendMessage.
func (t *Telegram) Send(ctx context.Context, env *engine.ActionEnv, msg engine.Message) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("notify.telegram chat %s: %s", t.ChatID, fmt.Sprintf(format, args...))
	}
	token, err := t.Token.Resolve(ctx, env.Effects, env.Env)
	if err != nil {
		return fail("%v", err)
	}
	if badToken(token) {
		return fail("token %s is not a bot token: %s", t.Token, badTokenReason)
	}
	body, err := json.Marshal(map[string]any{
		"chat_id":              t.ChatID,
		"text":                 text.Runes(msg.Text, telegramMaxText),
		"disable_notification": t.Silent,
	})
	if err != nil {
		return fail("%v", err)
	}
	// Redact covers the unlikely case of a server echoing the path back.
	redact := func(s string) string { return strings.ReplaceAll(s, token, t.Token.String()) }
	status, data, err := post(ctx, env.Effects, t.Timeout, "telegram sendMessage chat "+t.ChatID,
		t.BaseURL+"/bot"+token+"/sendMessage", nil, body)
	if err != nil {
		return fail("%s", redact(err.Error()))
	}
	var ans telegramAnswer
	jsonErr := json.Unmarshal(data, &ans)
	switch {
	case status == http.StatusOK && jsonErr == nil && ans.OK:
		return nil
	case jsonErr != nil:
		return fail("HTTP %d %s: the answer is not Bot API JSON: %s", status, http.StatusText(status), redact(snippet(data)))
	case ans.Description != "":
		return fail("HTTP %d: %s", status, redact(ans.Description))
	}
	return fail("HTTP %d %s: answer without \"ok\": true", status, http.StatusText(status))
}

func telegramBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		chatID  starlark.Value
		token   = secret.Arg{Name: "telegram_token"}
		baseURL = DefaultTelegramURL
		timeout = star.Duration{D: 15 * time.Second}
		silent  bool
	)
	if err := checkPositional(b, args, 2); err != nil {
		return nil, err
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "chat_id", &chatID, "token", &token,
		"base_url?", &baseURL, "timeout?", &timeout, "silent?", &silent); err != nil {
		return nil, err
	}
	var chat string
	switch x := chatID.(type) {
	case starlark.String:
		chat = string(x)
	case starlark.Int:
		chat = x.String()
	default:
		return nil, fmt.Errorf("%s: for parameter chat_id: want a string or int, got %s", b.Name(), chatID.Type())
	}
	t, err := NewTelegram(chat, token.Secret, baseURL, timeout.D, silent)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return t, nil
}
