package scenario

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// What Sprout says, in either language, mapped to what it means for the scenario. Outcome texts
// are the final answers to a tap (actors/texts.go); the order matters where one contains another.
var (
	acceptedTexts = []string{"Got it, watering", "正在为"}
	offlineTexts  = []string{"is offline, so it cannot water", "当前离线"}
	outcomeTexts  = []struct{ kind, text string }{
		{"done", "watering done"}, {"done", "浇水完成"},
		{"failed", "watering failed"}, {"failed", "浇水失败"},
		{"rejected", "refused to water"}, {"rejected", "拒绝浇水"},
		{"busy", "is busy with something else"}, {"busy", "正在执行其他操作"},
		{"offline", "is offline, so it cannot water"}, {"offline", "当前离线"},
		{"timed_out", "did not answer in time"}, {"timed_out", "没有在规定时间内回应"},
		{"not_bound", "You are not bound to"}, {"not_bound", "你没有绑定"},
		{"error", "cannot do that right now"}, {"error", "暂时无法执行"},
	}
	alertTexts   = []string{" alert: ", "提醒：", "is back to normal", "已恢复正常"}
	raisedTexts  = []string{" alert: ", "提醒："} // an alert raised (not cleared)
	summaryTexts = []string{"need attention", "需要关注"}
	boundTexts   = []string{"Bound:", "绑定成功", "already bound", "已经绑定过了"}
	pendingTexts = []string{"waiting for approval", "等待批准", "still waiting for its owner", "还在等待管理员批准"}
)

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

func outcomeKind(text string) string {
	for _, o := range outcomeTexts {
		if strings.Contains(text, o.text) {
			return o.kind
		}
	}
	return ""
}

// simUser is one simulated WeChat user and what the scenario knows of their conversation.
type simUser struct {
	u    *wechatsim.User
	pots []string // bound, in the order "water N" numbers them
	dry  bool     // has a pot that started dry

	mu         sync.Mutex
	seen       int                    // conversation entries already read
	pending    map[string][]time.Time // device -> accepted taps still waiting for a pushed outcome
	early      map[string][]time.Time // device -> pushed outcomes that arrived before their tap was seen accepted
	taps       int
	replies    int
	accepted   int
	outcomes   map[string]int
	alerts     int
	raised     map[string]int // pot -> alert pushes raising an alert about it
	bad        []badTap       // taps that ended without an answer from the pot or its grain
	summaries  int
	pushes     int
	unanswered int
}

func newSimUser(u *wechatsim.User, pots []string) *simUser {
	return &simUser{u: u, pots: pots, pending: map[string][]time.Time{}, early: map[string][]time.Time{}, outcomes: map[string]int{}, raised: map[string]int{}}
}

// device finds which of the user's pots a text is about.
func (s *simUser) device(text string) string {
	for _, p := range s.pots {
		if strings.Contains(text, p) {
			return p
		}
	}
	return ""
}

// badTap is a tap that got no passive reply, a reply that is neither "watering" nor "offline",
// or a pushed outcome that is not the pot's (an error): what a failover may cause.
type badTap struct {
	at  time.Time // when it was tapped (for a push that beat its reply: when the push came)
	why string
}

// potAnswers are the outcomes that come from the pot or from its grain knowing it is offline.
var potAnswers = map[string]bool{"done": true, "offline": true, "timed_out": true, "rejected": true, "busy": true, "failed": true}

// tapResult is what one tap came to, for the run's counters.
type tapResult struct {
	replied bool
	reply   time.Duration
	final   string // the outcome kind when the passive reply was final (offline, error)
	// outcome is the tap-to-push latency when the pushed outcome had already arrived.
	outcome time.Duration
}

// tap sends "water N" and classifies the passive reply.
func (s *simUser) tap(ctx context.Context, n int, deliver func(tapResult)) {
	s.mu.Lock()
	s.taps++
	s.mu.Unlock()
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	r, err := s.u.SendText(cctx, fmt.Sprintf("water %d", n))
	cancel()
	res := tapResult{reply: time.Since(start)}
	s.mu.Lock()
	defer func() { s.mu.Unlock(); deliver(res) }()
	if err != nil || r == nil || r.Empty {
		s.outcomes["no_reply"]++
		s.bad = append(s.bad, badTap{start, "no passive reply"})
		return
	}
	res.replied = true
	s.replies++
	switch {
	case containsAny(r.Content, acceptedTexts):
		s.accepted++
		d := s.device(r.Content)
		if q := s.early[d]; len(q) > 0 {
			// The push beat the reply to the recorder: match them now.
			res.outcome = q[0].Sub(start)
			s.early[d] = q[1:]
			return
		}
		s.pending[d] = append(s.pending[d], start)
	case containsAny(r.Content, offlineTexts):
		res.final = "offline"
		s.outcomes[res.final]++
	default:
		res.final = "reply: " + firstWords(r.Content, 4)
		s.outcomes["other_reply"]++
		s.bad = append(s.bad, badTap{start, res.final})
	}
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

// scanned is what new conversation entries brought.
type scanned struct {
	outcomes int
	alerts   int
	pushes   int
	latency  []time.Duration // tap to pushed outcome
}

// scan reads the user's new conversation entries: pushed outcomes (matched to the oldest pending
// tap on the same pot), alerts, summaries and other pushes.
func (s *simUser) scan(p *wechatsim.Platform) scanned {
	es := p.Conversation(s.u.OpenID)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out scanned
	for ; s.seen < len(es); s.seen++ {
		e := es[s.seen]
		if e.Direction != wechatsim.Out || e.Kind == wechatsim.KindReply {
			continue
		}
		s.pushes++
		out.pushes++
		text := e.Text
		if text == "" && e.Data != nil {
			for _, v := range e.Data {
				text += " " + v.Value
			}
		}
		switch {
		case containsAny(text, summaryTexts):
			s.summaries++
			out.alerts++
		case containsAny(text, alertTexts):
			s.alerts++
			if containsAny(text, raisedTexts) {
				s.raised[s.device(text)]++
			}
			out.alerts++
		default:
			kind := outcomeKind(text)
			if kind == "" {
				continue
			}
			s.outcomes[kind]++
			out.outcomes++
			d := s.device(text)
			at := e.At
			if q := s.pending[d]; len(q) > 0 {
				out.latency = append(out.latency, e.At.Sub(q[0]))
				at = q[0]
				s.pending[d] = q[1:]
			} else {
				s.early[d] = append(s.early[d], e.At)
			}
			if !potAnswers[kind] {
				s.bad = append(s.bad, badTap{at, "pushed " + kind})
			}
		}
	}
	return out
}

// waiting counts accepted taps still without a pushed outcome.
func (s *simUser) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.pending {
		n += len(q)
	}
	return n
}
