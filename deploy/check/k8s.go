package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// runK8s checks every object of a YAML stream: a built-in kind is decoded
// strictly into its Kubernetes API type (an unknown or duplicated field is
// an error, as `kubectl apply --validate=strict` makes it); a custom
// resource is checked against its CRD's schema as the API server would
// (unknown fields, types, enums, required fields, CEL rules); any other
// kind is an error, so nothing goes unchecked.
func runK8s(args []string) ([]string, error) {
	flags := flag.NewFlagSet("k8s", flag.ContinueOnError)
	crdDir := flags.String("crds", "", "a folder of CustomResourceDefinition YAML files")
	if err := flags.Parse(args); err != nil {
		return nil, err
	}
	crds, err := loadCRDs(*crdDir)
	if err != nil {
		return nil, err
	}
	data, err := input(flags.Args())
	if err != nil {
		return nil, err
	}
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return []string{"no objects to check"}, nil
	}
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var problems []string
	for _, doc := range docs {
		// As the API server decodes: whole numbers become int64 (CEL rules compare them as integers).
		var u unstructured.Unstructured
		if err := utiljson.Unmarshal(doc, &u.Object); err != nil {
			problems = append(problems, fmt.Sprintf("not an object: %v", err))
			continue
		}
		gvk := u.GroupVersionKind()
		name := fmt.Sprintf("%s %s/%s", gvk.Kind, u.GetNamespace(), u.GetName())
		if gvk.Kind == "" || gvk.Version == "" {
			problems = append(problems, name+": no apiVersion or kind")
			continue
		}
		for _, p := range checkObject(strict, crds, gvk, doc, u.Object) {
			problems = append(problems, name+": "+p)
		}
	}
	return problems, nil
}

// checkObject checks one object (doc is its JSON, obj the same decoded).
func checkObject(strict runtime.Decoder, crds map[schema.GroupVersionKind]*crdSchema, gvk schema.GroupVersionKind, doc []byte, obj map[string]interface{}) []string {
	if scheme.Scheme.Recognizes(gvk) {
		if _, _, err := strict.Decode(doc, nil, nil); err != nil {
			return strings.Split(err.Error(), "\n")
		}
		return nil
	}
	if s, ok := crds[gvk]; ok {
		return s.validate(obj)
	}
	return []string{fmt.Sprintf("no schema for %s: neither a Kubernetes API type nor a CRD in -crds", gvk)}
}

// splitDocuments splits a YAML stream into its non-empty documents (as JSON).
func splitDocuments(data []byte) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if string(j) == "null" {
			continue
		}
		docs = append(docs, j)
	}
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
