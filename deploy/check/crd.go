package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
)

// crdSchema is one served version of a CRD, ready to check objects with.
type crdSchema struct {
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
	cel        *cel.Validator
}

// loadCRDs reads every CustomResourceDefinition in dir (strictly decoded
// too) and prepares each served version's schema as the API server does.
func loadCRDs(dir string) (map[schema.GroupVersionKind]*crdSchema, error) {
	out := map[schema.GroupVersionKind]*crdSchema{}
	if dir == "" {
		return out, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	s := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := apiextensions.AddToScheme(s); err != nil {
		return nil, err
	}
	strict := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		docs, err := splitDocuments(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		for _, doc := range docs {
			obj, _, err := strict.Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			v1, ok := obj.(*apiextensionsv1.CustomResourceDefinition)
			if !ok {
				return nil, fmt.Errorf("%s: not a CustomResourceDefinition", file)
			}
			var crd apiextensions.CustomResourceDefinition
			if err := s.Convert(v1, &crd, nil); err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			for _, v := range crd.Spec.Versions {
				if !v.Served {
					continue
				}
				prepared, err := prepare(&crd, v.Name)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
				}
				out[schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}] = prepared
			}
		}
	}
	return out, nil
}

func prepare(crd *apiextensions.CustomResourceDefinition, version string) (*crdSchema, error) {
	v, err := apiextensions.GetSchemaForVersion(crd, version)
	if err != nil {
		return nil, err
	}
	if v == nil || v.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("no schema")
	}
	structural, err := structuralschema.NewStructural(v.OpenAPIV3Schema)
	if err != nil {
		return nil, err
	}
	validator, _, err := validation.NewSchemaValidator(v.OpenAPIV3Schema)
	if err != nil {
		return nil, err
	}
	return &crdSchema{structural: structural, validator: validator, cel: cel.NewValidator(structural, true, celconfig.PerCallLimit)}, nil
}

// validate checks a custom resource as the API server does on create:
// fields its schema does not know (which the server would drop), then
// defaults, the OpenAPI schema (types, enums, patterns, required), the
// metadata and the CEL rules (x-kubernetes-validations).
func (c *crdSchema) validate(obj map[string]interface{}) []string {
	var problems []string
	unknown := structuralpruning.PruneWithOptions(runtime.DeepCopyJSON(obj), c.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, path := range unknown {
		problems = append(problems, fmt.Sprintf("unknown field %q", path))
	}
	obj = runtime.DeepCopyJSON(obj)
	structuraldefaulting.Default(obj, c.structural)
	errs := validation.ValidateCustomResource(nil, obj, c.validator)
	errs = append(errs, objectmeta.Validate(context.Background(), nil, obj, c.structural, true)...)
	celErrs, _ := c.cel.Validate(context.Background(), nil, c.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	errs = append(errs, celErrs...)
	return append(problems, describe(errs)...)
}

func describe(errs field.ErrorList) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, strings.TrimSpace(e.Error()))
	}
	return out
}
