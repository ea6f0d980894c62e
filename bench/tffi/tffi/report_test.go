package tffi

import (
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond, 0: time.Millisecond} {
		if got := Quantile(d, q); got != want {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	if d[0] != 100*time.Millisecond {
		t.Error("quantile sorted its input")
	}
	if got := Quantile(nil, 0.5); got != 0 {
		t.Errorf("no values: %v", got)
	}
	// Signed: served before Ready.
	if got := Quantile([]time.Duration{-3, 5, -1}, 0.5); got != -1 {
		t.Errorf("signed p50 %v, want -1", got)
	}
}

func TestMarkdown(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := &Report{
		Namespace: "team-a", Sandbox: "sb1", Router: "http://r", Version: "v1beta1",
		Modes: []ModeResult{
			{
				Mode: ModeProbe,
				Wakeups: []Wakeup{
					{Sent: at(0), FirstByte: at(600), Status: 200, Pod: "p1", PodSeen: at(20), AddressSeen: at(100), ReadySeen: at(1100)},
					{Sent: at(0), FirstByte: at(700), Status: 200, Pod: "p2", PodSeen: at(20), AddressSeen: at(100), ReadySeen: at(1100)},
				},
				Router: &RouterPhases{
					Count:    map[string]float64{"first_byte": 2, "probe_ok": 2},
					P50:      map[string]time.Duration{"first_byte": 650 * time.Millisecond, "probe_ok": 640 * time.Millisecond},
					P99:      map[string]time.Duration{"first_byte": 700 * time.Millisecond, "probe_ok": 690 * time.Millisecond},
					Releases: map[string]float64{ModeProbe: 2},
				},
			},
			{
				Mode: ModeReady,
				Wakeups: []Wakeup{
					{Sent: at(0), FirstByte: at(1110), Status: 200, Pod: "p3", PodSeen: at(20), AddressSeen: at(100), ReadySeen: at(1100)},
					{Sent: at(0), FirstByte: at(1120), Status: 200, Pod: "p4", PodSeen: at(20), AddressSeen: at(100), ReadySeen: at(1100)},
				},
				Router: &RouterPhases{Count: map[string]float64{"first_byte": 2}, P50: map[string]time.Duration{}, P99: map[string]time.Duration{}, Releases: map[string]float64{ModeReady: 2}},
			},
		},
	}
	md := r.Markdown()
	for _, want := range []string{
		"TFFI of team-a/sb1 through http://r (Sandbox v1beta1, 2 wake-ups per mode)",
		"| probe | 2 | 600.0 / 700.0 / 700.0 | -500.0 / -400.0 / -400.0 | 2 of 2 |",
		"| ready | 2 | 1110.0 / 1120.0 / 1120.0 | 10.0 / 20.0 / 20.0 | 0 of 2 |",
		"| probe | 20.0 / 20.0 / 20.0 | 100.0 / 100.0 / 100.0 | 1100.0 / 1100.0 / 1100.0 | 600.0 / 700.0 / 700.0 |",
		"| probe | 2 | 2 / 0 | - | - | - | - | 640.0 / 690.0 | - | 650.0 / 700.0 |",
		"| ready | 2 | 0 / 2 |",
		"not observable from outside the pod",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
