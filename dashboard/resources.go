package dashboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
)

// The dashboard writes resources as the server (resource.AsServer()): no
// permission applies and owner and read-only fields can be set, but every
// validation rule, unique constraint and hook runs as for anyone else,
// and subscribers receive the events.
var asServer = resource.AsServer()

type resourceSummary struct {
	Name   string
	Fields int
	Count  int
	Error  string
}

func (d *Dashboard) resources(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := requestContext(r)
	defer cancel()
	var out []resourceSummary
	for _, rc := range d.cfg.Config.Resources {
		sum := resourceSummary{Name: rc.Name, Fields: len(rc.Fields)}
		res, err := d.cfg.Resources.List(ctx, rc.Name, asServer, resource.ListQuery{Limit: 1})
		if err != nil {
			sum.Error = switchyard.ErrorMessage(err)
		}
		sum.Count = res.Count
		out = append(out, sum)
	}
	d.render(w, r, s, http.StatusOK, "resources.html", "Resources", "resources", out)
}

// declared returns a resource's declaration.
func (d *Dashboard) declared(name string) (config.Resource, bool) {
	for _, rc := range d.cfg.Config.Resources {
		if rc.Name == name {
			return rc, true
		}
	}
	return config.Resource{}, false
}

// column is a column of a resource table, with its sort link.
type column struct {
	Name, Href, Sort string // Sort: "ascending", "descending" or ""
}

// cell is a shown value: Text (shortened), Full when shortened, Null.
type cell struct {
	Text, Full string
	Null       bool
}

type tableRow struct {
	PK    string
	Cells []cell
}

type resourceListData struct {
	Name     string
	PK       string
	Fields   []config.Field
	Columns  []column
	Rows     []tableRow
	Count    int
	Page     int
	Pages    int
	PageSize int
	First    int
	Last     int
	Prev     string
	Next     string
	// The query: search text, ordering, one field filter.
	Search      string
	CanSearch   bool
	Ordering    string
	FilterField string
	FilterValue string
	Filterable  []string
	Errors      []string
	Self        string // this page's URL (the live reload fetches it)
}

// listParams reads a resource list's query string.
func listParams(v url.Values) (search, ordering, field, value string, page, size int) {
	search, ordering = v.Get("search"), v.Get("ordering")
	field, value = v.Get("field"), v.Get("value")
	page, _ = strconv.Atoi(v.Get("page"))
	size, _ = strconv.Atoi(v.Get("page_size"))
	return search, ordering, field, value, max(page, 1), size
}

func (d *Dashboard) resourceList(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	rc, ok := d.declared(name)
	if !ok {
		d.fail(w, r, s, http.StatusNotFound, "not_found", "There is no resource "+name+".")
		return
	}
	v := r.URL.Query()
	search, ordering, field, value, page, size := listParams(v)
	if size < 1 || size > 1000 {
		size = rc.PageSize
		if size < 1 {
			size = 25
		}
	}
	out := resourceListData{Name: name, PK: rc.PKField, Fields: rc.Fields, Search: search, CanSearch: len(rc.Search) > 0,
		Ordering: ordering, FilterField: field, FilterValue: value, Page: page, PageSize: size, Self: r.URL.RequestURI()}
	if out.PK == "" {
		out.PK = "id"
	}
	out.Filterable = append(out.Filterable, out.PK)
	for _, f := range rc.Fields {
		if f.Type != config.FieldJSON {
			out.Filterable = append(out.Filterable, f.Name)
		}
	}
	q := resource.ListQuery{Search: search, Limit: size, Offset: (page - 1) * size}
	if ordering != "" {
		q.Ordering = strings.Split(ordering, ",")
	}
	if field != "" {
		q.Filter = map[string]json.RawMessage{field: filterValue(rc, field, value)}
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	res, err := d.cfg.Resources.List(ctx, name, asServer, q)
	status := http.StatusOK
	if err != nil {
		status = switchyard.HTTPStatus(switchyard.ErrorCode(err))
		out.Errors = errorLines(err)
	}
	out.Count = res.Count
	out.Pages = max(1, (res.Count+size-1)/size)
	if len(res.Results) > 0 {
		out.First, out.Last = q.Offset+1, q.Offset+len(res.Results)
	}
	link := func(change map[string]string) string {
		nv := url.Values{}
		for k, vs := range v {
			if k != "fragment" {
				nv[k] = vs
			}
		}
		for k, val := range change {
			if val == "" {
				nv.Del(k)
			} else {
				nv.Set(k, val)
			}
		}
		if enc := nv.Encode(); enc != "" {
			return Prefix + "resources/" + name + "?" + enc
		}
		return Prefix + "resources/" + name
	}
	if page > 1 {
		out.Prev = link(map[string]string{"page": strconv.Itoa(page - 1)})
	}
	if page < out.Pages {
		out.Next = link(map[string]string{"page": strconv.Itoa(page + 1)})
	}
	cols := append([]string{out.PK}, fieldNames(rc.Fields)...)
	for _, c := range cols {
		col := column{Name: c}
		next := c
		switch ordering {
		case c:
			col.Sort, next = "ascending", "-"+c
		case "-" + c:
			col.Sort = "descending"
		}
		col.Href = link(map[string]string{"ordering": next, "page": ""})
		out.Columns = append(out.Columns, col)
	}
	for _, raw := range res.Results {
		var rec map[string]json.RawMessage
		if json.Unmarshal(raw, &rec) != nil {
			continue
		}
		row := tableRow{PK: strings.Trim(string(rec[out.PK]), `"`)}
		for _, c := range cols {
			row.Cells = append(row.Cells, shown(rec[c]))
		}
		out.Rows = append(out.Rows, row)
	}
	tmpl := "resource_list.html"
	if v.Get("fragment") == "1" {
		tmpl = "resource_table.html"
	}
	d.render(w, r, s, status, tmpl, name, "resources", out)
}

func fieldNames(fs []config.Field) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name
	}
	return out
}

// filterValue turns a filter's text into the JSON value of its field's
// type; text that is not one (abc for an int) goes as a string, and the
// service's validation says what is wrong with it.
func filterValue(rc config.Resource, field, text string) json.RawMessage {
	t := config.FieldInt // the primary key
	if f, ok := rc.Field(field); ok {
		t = f.Type
	}
	switch t {
	case config.FieldInt, config.FieldFloat, config.FieldBool:
		if text == "null" || (json.Valid([]byte(text)) && !strings.HasPrefix(strings.TrimSpace(text), `"`)) {
			return json.RawMessage(text)
		}
	}
	if text == "null" {
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(text)
	return b
}

// shown turns a record's value into a table cell.
func shown(raw json.RawMessage) cell {
	if len(raw) == 0 || string(raw) == "null" {
		return cell{Text: "—", Null: true}
	}
	var text string
	if raw[0] == '"' {
		json.Unmarshal(raw, &text)
	} else {
		var b bytes.Buffer
		json.Compact(&b, raw)
		text = b.String()
	}
	const most = 60
	if utf8.RuneCountInString(text) > most {
		return cell{Text: string([]rune(text)[:most-1]) + "…", Full: text}
	}
	return cell{Text: text}
}

// errorLines lists an error's messages: each field's for a validation
// error, the message otherwise.
func errorLines(err error) []string {
	var ve *resource.ValidationError
	if errors.As(err, &ve) {
		var out []string
		for _, k := range slices.Sorted(maps.Keys(ve.Fields)) {
			out = append(out, k+": "+strings.Join(ve.Fields[k], " "))
		}
		return out
	}
	return []string{switchyard.ErrorMessage(err)}
}

// formField is one input of the record form.
type formField struct {
	Name, Type, Value string
	Input             string // text, number, checkbox, textarea, json
	Checked           bool
	Required          bool
	ReadOnly, Owner   bool
	MaxLength         int
	Min, Max          string
	Step              string
	Errors            []string
}

type formData struct {
	Name   string
	PK     string // "" for a new record
	PKName string
	Fields []formField
	// Errors are the record's errors not tied to a field (and those of a
	// field the form does not show); Error a refusal (403, 404).
	Errors []string
	Action string
	Back   string
}

// form builds the record form from a record's JSON (nil: a new record).
func (d *Dashboard) form(rc config.Resource, pk string, rec map[string]json.RawMessage) formData {
	sc, _ := d.cfg.Resources.Schema(rc.Name)
	owners := map[string]bool{}
	if sc != nil {
		for _, f := range sc.OwnerFields() {
			owners[f] = true
		}
	}
	fd := formData{Name: rc.Name, PK: pk, PKName: rc.PKField, Back: Prefix + "resources/" + rc.Name}
	if fd.PKName == "" {
		fd.PKName = "id"
	}
	if pk == "" {
		fd.Action = Prefix + "resources/" + rc.Name + "/new"
	} else {
		fd.Action = Prefix + "resources/" + rc.Name + "/" + pk
	}
	for _, f := range rc.Fields {
		ff := formField{Name: f.Name, Type: f.Type, Required: f.Required, ReadOnly: f.ReadOnly, Owner: owners[f.Name]}
		if f.MaxLength != nil {
			ff.MaxLength = *f.MaxLength
		}
		if f.Min != nil {
			ff.Min = strconv.FormatFloat(*f.Min, 'f', -1, 64)
		}
		if f.Max != nil {
			ff.Max = strconv.FormatFloat(*f.Max, 'f', -1, 64)
		}
		raw, has := rec[f.Name]
		if rec == nil && f.Default != nil {
			raw, _ = json.Marshal(f.Default)
			has = true
		}
		switch f.Type {
		case config.FieldBool:
			ff.Input = "checkbox"
			ff.Checked = has && string(raw) == "true"
		case config.FieldInt, config.FieldFloat:
			ff.Input, ff.Step = "number", "1"
			if f.Type == config.FieldFloat {
				ff.Step = "any"
			}
			if has && string(raw) != "null" {
				ff.Value = string(raw)
			}
		case config.FieldText:
			ff.Input = "textarea"
			if has {
				json.Unmarshal(raw, &ff.Value)
			}
		case config.FieldJSON:
			ff.Input = "json"
			if has && string(raw) != "null" {
				var b bytes.Buffer
				json.Indent(&b, raw, "", "  ")
				ff.Value = b.String()
			}
		default: // string, datetime
			ff.Input = "text"
			if has {
				json.Unmarshal(raw, &ff.Value)
			}
		}
		fd.Fields = append(fd.Fields, ff)
	}
	return fd
}

// body turns the posted form into the record's JSON for the service,
// keeping what was typed in fd for a form shown again. An empty input is
// null (left out on a create, so the field's default applies); a number
// input that is not a number goes as the typed string, for the service to
// refuse. JSON that does not parse is the one check made here.
func body(r *http.Request, fd *formData, create bool) (json.RawMessage, bool) {
	out := map[string]json.RawMessage{}
	ok := true
	for i := range fd.Fields {
		ff := &fd.Fields[i]
		text := r.PostFormValue(ff.Name)
		ff.Value = text
		if ff.Input == "checkbox" {
			ff.Checked = r.PostFormValue(ff.Name) != ""
			out[ff.Name] = json.RawMessage(strconv.FormatBool(ff.Checked))
			continue
		}
		if text == "" && !(ff.Required && (ff.Input == "text" || ff.Input == "textarea")) {
			if !create {
				out[ff.Name] = json.RawMessage("null")
			}
			continue
		}
		switch ff.Input {
		case "number":
			if json.Valid([]byte(text)) && !strings.ContainsAny(text, `"[{tfn`) {
				out[ff.Name] = json.RawMessage(text)
				continue
			}
		case "json":
			if !json.Valid([]byte(text)) {
				ff.Errors = append(ff.Errors, "Enter valid JSON.")
				ok = false
				continue
			}
			out[ff.Name] = json.RawMessage(text)
			continue
		}
		b, _ := json.Marshal(text)
		out[ff.Name] = b
	}
	b, _ := json.Marshal(out)
	return b, ok
}

// showErrors puts a write's errors on the form: each field's under its
// input, the rest at the top.
func showErrors(fd *formData, err error) {
	var ve *resource.ValidationError
	if !errors.As(err, &ve) {
		fd.Errors = append(fd.Errors, switchyard.ErrorMessage(err))
		return
	}
	for _, k := range slices.Sorted(maps.Keys(ve.Fields)) {
		placed := false
		for i := range fd.Fields {
			if fd.Fields[i].Name == k {
				fd.Fields[i].Errors = append(fd.Fields[i].Errors, ve.Fields[k]...)
				placed = true
			}
		}
		if !placed {
			label := k + ": "
			if k == "non_field_errors" {
				label = ""
			}
			fd.Errors = append(fd.Errors, label+strings.Join(ve.Fields[k], " "))
		}
	}
}

func (d *Dashboard) resourceNew(w http.ResponseWriter, r *http.Request, s *session) {
	rc, ok := d.declared(r.PathValue("name"))
	if !ok {
		d.fail(w, r, s, http.StatusNotFound, "not_found", "There is no resource "+r.PathValue("name")+".")
		return
	}
	d.render(w, r, s, http.StatusOK, "resource_form.html", "New "+rc.Name, "resources", d.form(rc, "", nil))
}

func (d *Dashboard) resourceCreate(w http.ResponseWriter, r *http.Request, s *session) {
	rc, ok := d.declared(r.PathValue("name"))
	if !ok {
		d.fail(w, r, s, http.StatusNotFound, "not_found", "There is no resource "+r.PathValue("name")+".")
		return
	}
	fd := d.form(rc, "", nil)
	b, ok := body(r, &fd, true)
	if !ok {
		d.render(w, r, s, http.StatusBadRequest, "resource_form.html", "New "+rc.Name, "resources", fd)
		return
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	rec, err := d.cfg.Resources.Create(ctx, rc.Name, asServer, b)
	if err != nil {
		showErrors(&fd, err)
		d.render(w, r, s, writeStatus(err), "resource_form.html", "New "+rc.Name, "resources", fd)
		return
	}
	var m map[string]json.RawMessage
	json.Unmarshal(rec, &m)
	pk := strings.Trim(string(m[fd.PKName]), `"`)
	d.log.Info("dashboard: record created", "resource", rc.Name, "pk", pk, "remote", r.RemoteAddr)
	s.setFlash(fmt.Sprintf("Created %s %s.", rc.Name, pk))
	http.Redirect(w, r, Prefix+"resources/"+rc.Name, http.StatusSeeOther)
}

// writeStatus is the status of a page showing a refused write.
func writeStatus(err error) int {
	return switchyard.HTTPStatus(switchyard.ErrorCode(err))
}

// record loads a record for the form.
func (d *Dashboard) record(r *http.Request) (config.Resource, string, map[string]json.RawMessage, error) {
	rc, ok := d.declared(r.PathValue("name"))
	if !ok {
		return rc, "", nil, switchyard.Errorf(switchyard.CodeNotFound, "There is no resource %s.", r.PathValue("name"))
	}
	pk, err := strconv.ParseInt(r.PathValue("pk"), 10, 64)
	if err != nil || pk <= 0 {
		return rc, "", nil, switchyard.Errorf(switchyard.CodeNotFound, "There is no %s %q.", rc.Name, r.PathValue("pk"))
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	raw, err := d.cfg.Resources.Retrieve(ctx, rc.Name, asServer, pk)
	if err != nil {
		return rc, "", nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return rc, "", nil, err
	}
	return rc, strconv.FormatInt(pk, 10), m, nil
}

func (d *Dashboard) resourceEdit(w http.ResponseWriter, r *http.Request, s *session) {
	rc, pk, rec, err := d.record(r)
	if err != nil {
		d.fail(w, r, s, writeStatus(err), string(switchyard.ErrorCode(err)), switchyard.ErrorMessage(err))
		return
	}
	d.render(w, r, s, http.StatusOK, "resource_form.html", rc.Name+" "+pk, "resources", d.form(rc, pk, rec))
}

// resourceSave patches a record with every field of the form.
func (d *Dashboard) resourceSave(w http.ResponseWriter, r *http.Request, s *session) {
	rc, pk, rec, err := d.record(r)
	if err != nil {
		d.fail(w, r, s, writeStatus(err), string(switchyard.ErrorCode(err)), switchyard.ErrorMessage(err))
		return
	}
	fd := d.form(rc, pk, rec)
	title := rc.Name + " " + pk
	b, ok := body(r, &fd, false)
	if !ok {
		d.render(w, r, s, http.StatusBadRequest, "resource_form.html", title, "resources", fd)
		return
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	id, _ := strconv.ParseInt(pk, 10, 64)
	if _, err := d.cfg.Resources.Write(ctx, rc.Name, asServer, id, b, resource.Patch); err != nil {
		showErrors(&fd, err)
		d.render(w, r, s, writeStatus(err), "resource_form.html", title, "resources", fd)
		return
	}
	d.log.Info("dashboard: record saved", "resource", rc.Name, "pk", pk, "remote", r.RemoteAddr)
	s.setFlash(fmt.Sprintf("Saved %s %s.", rc.Name, pk))
	http.Redirect(w, r, Prefix+"resources/"+rc.Name, http.StatusSeeOther)
}

func (d *Dashboard) resourceDelete(w http.ResponseWriter, r *http.Request, s *session) {
	rc, ok := d.declared(r.PathValue("name"))
	pk, err := strconv.ParseInt(r.PathValue("pk"), 10, 64)
	if !ok || err != nil {
		d.fail(w, r, s, http.StatusNotFound, "not_found", "There is no such record.")
		return
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	if err := d.cfg.Resources.Delete(ctx, rc.Name, asServer, pk); err != nil {
		s.setFlash(fmt.Sprintf("%s %d was not deleted: %s", rc.Name, pk, strings.Join(errorLines(err), "; ")))
	} else {
		d.log.Info("dashboard: record deleted", "resource", rc.Name, "pk", pk, "remote", r.RemoteAddr)
		s.setFlash(fmt.Sprintf("Deleted %s %d.", rc.Name, pk))
	}
	http.Redirect(w, r, Prefix+"resources/"+rc.Name, http.StatusSeeOther)
}
