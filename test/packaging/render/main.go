// Command render renders a Helm chart the way `helm template` / `helm install` do, for the chart
// tests (test/packaging/render/chart-render.test.ts), on machines without helm or a Go module proxy.
//
// It uses what Helm itself renders with — Go's text/template, sprig v3 and sigs.k8s.io/yaml, all
// Debian packages (golang-go, golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev, built
// with GO111MODULE=off GOPATH=/usr/share/gocode) — plus this file's own small versions of the
// functions and objects Helm adds: include, tpl, required, fail, toYaml/fromYaml/toJson/fromJson,
// .Values (values.yaml with -f files coalesced over it), .Release, .Chart, .Capabilities and
// .Template, and .Files.Get. It is written for this repository's chart, not as a general Helm
// replacement: no subcharts, no .Files.Glob/AsConfig/AsSecrets, no .helmignore, no schema validation
// (chart-values.test.ts does that with ajv).
//
// lookup is the point of it: the request says what the cluster holds, or that there is no cluster
// (helm template, --dry-run=client, Argo CD), where Helm's lookup answers an empty map to every call.
//
// Input (stdin, JSON):
//
//	{"chart": dir, "valueFiles": [paths], "values": {...} (like --set, applied last),
//	 "release": {"name", "namespace", "revision", "isUpgrade"},
//	 "cluster": null | {"objects": [Kubernetes objects, as JSON]}}
//
// Output (stdout, JSON): {"manifests": {"<chart>/templates/<file>": text}} or {"error": message}.
// A template error is an answer ({"error"}, exit 0); a bad request exits 2.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type request struct {
	Chart      string                 `json:"chart"`
	ValueFiles []string               `json:"valueFiles"`
	Values     map[string]interface{} `json:"values"`
	Release    struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		Revision  int    `json:"revision"`
		IsUpgrade bool   `json:"isUpgrade"`
	} `json:"release"`
	Cluster *struct {
		Objects []map[string]interface{} `json:"objects"`
	} `json:"cluster"`
}

type response struct {
	Manifests map[string]string `json:"manifests,omitempty"`
	Error     string            `json:"error,omitempty"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "render: bad request:", err)
		os.Exit(2)
	}
	manifests, err := render(req)
	var out response
	if err != nil {
		var bad badRequest
		if errors.As(err, &bad) {
			fmt.Fprintln(os.Stderr, "render:", err)
			os.Exit(2)
		}
		out.Error = err.Error()
	} else {
		out.Manifests = manifests
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(2)
	}
}

// badRequest is a problem with the request or the chart's files, not a template failure.
type badRequest struct{ error }

func readYAMLMap(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, badRequest{err}
	}
	// sigs.k8s.io/yaml, as Helm reads values: YAML through JSON, so numbers are float64 as in Helm.
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, badRequest{fmt.Errorf("%s: %w", path, err)}
	}
	return m, nil
}

// mergeInto lays src over dst, maps key by key, as Helm merges several -f files and --set values.
func mergeInto(dst, src map[string]interface{}) {
	for k, v := range src {
		if sv, ok := v.(map[string]interface{}); ok {
			if dv, ok := dst[k].(map[string]interface{}); ok {
				mergeInto(dv, sv)
				continue
			}
		}
		dst[k] = v
	}
}

// coalesce fills the user's values from the chart's defaults, as Helm's chartutil does: a key the
// user left out takes the default, maps coalesce key by key, anything else the user set wins, and a
// user's null removes a key the chart has.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	for k, dv := range defaults {
		uv, present := user[k]
		switch {
		case !present:
			user[k] = dv
		case uv == nil:
			delete(user, k)
		default:
			um, uok := uv.(map[string]interface{})
			dm, dok := dv.(map[string]interface{})
			if uok && dok {
				coalesce(um, dm)
			}
		}
	}
	return user
}

// chartMetadata turns Chart.yaml keys into the field names templates use (.Chart.AppVersion).
func chartMetadata(raw map[string]interface{}) map[string]interface{} {
	meta := map[string]interface{}{}
	for k, v := range raw {
		name := strings.ToUpper(k[:1]) + k[1:]
		if k == "apiVersion" {
			name = "APIVersion"
		}
		meta[name] = v
	}
	return meta
}

// lookupFunc answers lookup(apiVersion, kind, namespace, name) from the request's cluster. With no
// cluster it answers an empty map to everything, as Helm does without a connection. With one: a
// name gets that object or an empty map (not found); no name gets a list, which always has items.
func lookupFunc(cluster []map[string]interface{}, hasCluster bool) func(string, string, string, string) (map[string]interface{}, error) {
	return func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		if !hasCluster {
			return map[string]interface{}{}, nil
		}
		clusterScoped := kind == "Namespace"
		items := []interface{}{}
		for _, obj := range cluster {
			meta, _ := obj["metadata"].(map[string]interface{})
			if obj["apiVersion"] != apiVersion || obj["kind"] != kind || meta == nil {
				continue
			}
			if !clusterScoped && namespace != "" && meta["namespace"] != namespace {
				continue
			}
			if name == "" {
				items = append(items, obj)
			} else if meta["name"] == name {
				return obj, nil
			}
		}
		if name != "" {
			return map[string]interface{}{}, nil
		}
		return map[string]interface{}{
			"apiVersion": apiVersion, "kind": kind + "List",
			"metadata": map[string]interface{}{"resourceVersion": "1"}, "items": items,
		}, nil
	}
}

func render(req request) (map[string]string, error) {
	if req.Chart == "" || req.Release.Name == "" || req.Release.Namespace == "" {
		return nil, badRequest{errors.New("chart, release.name and release.namespace are required")}
	}
	rawChart, err := readYAMLMap(filepath.Join(req.Chart, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	chartName, _ := rawChart["name"].(string)
	defaults, err := readYAMLMap(filepath.Join(req.Chart, "values.yaml"))
	if err != nil {
		return nil, err
	}
	user := map[string]interface{}{}
	for _, f := range req.ValueFiles {
		m, err := readYAMLMap(f)
		if err != nil {
			return nil, err
		}
		mergeInto(user, m)
	}
	if req.Values != nil {
		mergeInto(user, req.Values)
	}
	values := coalesce(user, defaults)

	revision := req.Release.Revision
	if revision == 0 {
		revision = 1
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chartMetadata(rawChart),
		"Release": map[string]interface{}{
			"Name": req.Release.Name, "Namespace": req.Release.Namespace, "Revision": revision,
			"IsInstall": !req.Release.IsUpgrade, "IsUpgrade": req.Release.IsUpgrade, "Service": "Helm",
		},
		"Files": chartFiles{dir: req.Chart},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.30.0", "GitVersion": "v1.30.0", "Major": "1", "Minor": "30"},
		},
	}

	// Every file under templates/, named <chart>/templates/<path> as Helm names them.
	templatesDir := filepath.Join(req.Chart, "templates")
	var names []string
	sources := map[string]string{}
	err = filepath.WalkDir(templatesDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(templatesDir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		name := chartName + "/templates/" + filepath.ToSlash(rel)
		names = append(names, name)
		sources[name] = string(data)
		return nil
	})
	if err != nil {
		return nil, badRequest{err}
	}
	sort.Strings(names)

	// missingkey=zero and "<no value>" removed below: Helm's non-strict rendering.
	t := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	// Helm removes these so a render cannot read the renderer's environment.
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var b strings.Builder
		err := t.ExecuteTemplate(&b, name, data)
		return b.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		inline, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		err = inline.Execute(&b, data)
		return strings.ReplaceAll(b.String(), "<no value>", ""), err
	}
	// required and fail mark their message so that the error reads as Helm prints it (see helmError).
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if s, ok := v.(string); v == nil || (ok && s == "") {
			return v, errors.New(userErrorStart + msg + userErrorEnd)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) {
		return "", errors.New(userErrorStart + msg + userErrorEnd)
	}
	var objects []map[string]interface{}
	if req.Cluster != nil {
		objects = req.Cluster.Objects
	}
	funcs["lookup"] = lookupFunc(objects, req.Cluster != nil)
	t.Funcs(funcs)

	for _, name := range names {
		if _, err := t.New(name).Parse(sources[name]); err != nil {
			return nil, err
		}
	}
	out := map[string]string{}
	for _, name := range names {
		// Partials (_helpers.tpl) only hold definitions; Helm does not output them.
		if strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		vals := map[string]interface{}{}
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": name, "BasePath": chartName + "/templates"}
		var b strings.Builder
		if err := t.ExecuteTemplate(&b, name, vals); err != nil {
			return nil, helmError(err)
		}
		out[name] = strings.ReplaceAll(b.String(), "<no value>", "")
	}
	return out, nil
}

// chartFiles is .Files: Get reads a file of the chart by its path from the chart's root, as Helm's
// does. Helm's .Files holds every file but Chart.yaml, values.yaml, values.schema.json, templates/
// and charts/ (and .helmignore'd ones); a name outside it, or missing, reads as "", as in Helm.
type chartFiles struct{ dir string }

func (f chartFiles) Get(name string) string {
	clean := filepath.ToSlash(filepath.Clean(name))
	top := strings.SplitN(clean, "/", 2)[0]
	if filepath.IsAbs(name) || top == ".." || top == "templates" || top == "charts" ||
		clean == "Chart.yaml" || clean == "values.yaml" || clean == "values.schema.json" {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(f.dir, clean))
	if err != nil {
		return ""
	}
	return string(data)
}

const userErrorStart, userErrorEnd = "\x00user-error:", "\x00"

var execErrorAt = regexp.MustCompile(`^template: ([^ ]+?:\d+:\d+): `)

// helmError words a required/fail error as `helm template` does — "execution error at
// (<template>:<line>:<col>): <the chart's message>" — instead of text/template's whole call chain.
func helmError(err error) error {
	text := err.Error()
	start := strings.Index(text, userErrorStart)
	end := strings.LastIndex(text, userErrorEnd)
	if start < 0 || end <= start {
		return err
	}
	at := execErrorAt.FindStringSubmatch(text)
	if at == nil {
		return errors.New(text[start+len(userErrorStart) : end])
	}
	return fmt.Errorf("execution error at (%s): %s", at[1], text[start+len(userErrorStart):end])
}
