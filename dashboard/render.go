package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/queue"
)

// page is what every template receives.
type page struct {
	Title  string
	Nav    string // the navigation entry to highlight
	CSRF   string
	Flash  string
	Prefix string
	// Version is the server's, shown in the footer.
	Version string
	Data    any
}

// nav are the navigation entries: id, label, path under Prefix.
var nav = [][3]string{
	{"overview", "Overview", ""},
	{"connections", "Connections", "connections"},
	{"channels", "Channels", "channels"},
	{"resources", "Resources", "resources"},
	{"queues", "Signals & queues", "queues"},
	{"config", "Configuration", "config"},
}

var funcs = template.FuncMap{
	"nav": func() [][3]string { return nav },
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		d := time.Since(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh %dm ago", int(d.Hours()), int(d.Minutes())%60)
		}
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	},
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"clock": func(t time.Time) string { return t.Local().Format("15:04:05") },
	"rate": func(v float64) string {
		switch {
		case v >= 100:
			return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
		case v >= 10:
			return strconv.FormatFloat(v, 'f', 1, 64)
		}
		return strconv.FormatFloat(v, 'f', 2, 64)
	},
	"or": func(s, alt string) string {
		if s == "" {
			return alt
		}
		return s
	},
	"json": func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	},
	"pretty": func(raw json.RawMessage) string {
		var b bytes.Buffer
		if json.Indent(&b, raw, "", "  ") != nil {
			return string(raw)
		}
		return b.String()
	},
	"spark": sparkPath,
	"jobs": func(label string, jobs []queue.Info, field, prefix, csrf string) map[string]any {
		return map[string]any{"Label": label, "Jobs": jobs, "Field": field, "Prefix": prefix, "CSRF": csrf}
	},
	"fig": func(label string, value any, field string, samples []Sample, sub ...string) map[string]any {
		return map[string]any{"Label": label, "Value": value, "Field": field, "Samples": samples, "Sub": strings.Join(sub, " ")}
	},
	"add":    func(a, b int) int { return a + b },
	"query":  func(v url.Values) string { return v.Encode() },
	"join":   strings.Join,
	"lower":  strings.ToLower,
	"plural": func(n int, one, many string) string { return map[bool]string{true: one, false: many}[n == 1] },
}

// parsePages parses every page with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimPrefix(n, "templates/")
		if base == "layout.html" || base == "partials.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", base, err)
		}
		out[base] = t
	}
	return out, nil
}

// render shows a page of the signed-in dashboard.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, s *session, status int, name, title, navID string, data any) {
	p := page{Title: title, Nav: navID, Data: data}
	if s != nil {
		p.CSRF, p.Flash = s.csrf, s.takeFlash()
	}
	d.renderPage(w, status, name, p)
}

// renderPage executes a template into a buffer first, so that a failure
// is a clean 500 and never half a page.
func (d *Dashboard) renderPage(w http.ResponseWriter, status int, name string, p page) {
	p.Prefix, p.Version = Prefix, switchyard.Version
	t, ok := d.pages[name]
	var b bytes.Buffer
	if !ok {
		d.log.Error("dashboard: no such template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	root := "layout"
	if strings.HasSuffix(name, "_rows.html") || strings.HasSuffix(name, "_table.html") {
		root = "content" // a fragment: the part of the page a live view reloads
	}
	if err := t.ExecuteTemplate(&b, root, p); err != nil {
		d.log.Error("dashboard: rendering failed", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// sparkPath returns the SVG path of a chart of values over a width×height
// box (y grows downwards; the largest value reaches the top).
func sparkPath(samples []Sample, field string, width, height float64) string {
	if len(samples) < 2 {
		return ""
	}
	vals := make([]float64, len(samples))
	top := 0.0
	for i, s := range samples {
		vals[i] = sampleValue(s, field)
		top = max(top, vals[i])
	}
	if top == 0 {
		top = 1
	}
	var b strings.Builder
	for i, v := range vals {
		x := float64(i) / float64(len(vals)-1) * width
		y := height - v/top*(height-2) - 1
		if i == 0 {
			fmt.Fprintf(&b, "M%.1f %.1f", x, y)
		} else {
			fmt.Fprintf(&b, "L%.1f %.1f", x, y)
		}
	}
	return b.String()
}

func sampleValue(s Sample, field string) float64 {
	switch field {
	case "connections":
		return float64(s.Connections)
	case "users":
		return float64(s.Users)
	case "channels":
		return float64(s.Channels)
	case "messages_in":
		return s.MessagesIn
	case "messages_out":
		return s.MessagesOut
	case "publications":
		return s.Publications
	case "deliveries":
		return s.Deliveries
	}
	return 0
}
