// Package admission is the validating admission webhook of FirmwareRollout:
// the checks the CRD's OpenAPI schema and CEL rules cannot make because
// they need a compiler. Today that is the analysis steps: a successCondition
// must compile with CEL (the compiler's message is the refusal's) and a
// query must parse as a template over the analysis variables.
//
// Why a webhook: CRD validation rules (x-kubernetes-validations) and
// ValidatingAdmissionPolicies evaluate CEL written by the CRD's author over
// the object; neither can compile a CEL expression the user wrote in a
// field. So the manager serves this webhook (cmd/manager --webhook-port),
// config/webhook registers it, and internal/controlplane serves it in
// process for the demo and the tests (Options.Admission). The controller
// makes the same checks again before an analysis runs, so a cluster
// without the webhook gets a Stalled rollout with the same message instead.
package admission

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/analysis"
)

// Path is where the webhook is served; config/webhook names it.
const Path = "/validate-firmware-stationfleet-io-v1alpha1-firmwarerollout"

// +kubebuilder:webhook:path=/validate-firmware-stationfleet-io-v1alpha1-firmwarerollout,mutating=false,failurePolicy=fail,sideEffects=None,groups=firmware.stationfleet.io,resources=firmwarerollouts,verbs=create;update,versions=v1alpha1,name=vfirmwarerollout.stationfleet.io,admissionReviewVersions=v1

// RolloutValidator refuses a FirmwareRollout whose analysis steps do not
// compile.
type RolloutValidator struct{}

var _ admission.Validator[*fwv1.FirmwareRollout] = RolloutValidator{}

// ValidateCreate validates a new rollout.
func (RolloutValidator) ValidateCreate(_ context.Context, obj *fwv1.FirmwareRollout) (admission.Warnings, error) {
	return nil, Validate(obj)
}

// ValidateUpdate validates a changed rollout. A rollout being deleted, or
// whose steps did not change, is let through (ratcheting, as the API
// server does for CRD rules): a rollout stored before the webhook was
// installed must still take its finalizer, a pause or an abort.
func (RolloutValidator) ValidateUpdate(_ context.Context, old, obj *fwv1.FirmwareRollout) (admission.Warnings, error) {
	if !obj.DeletionTimestamp.IsZero() || equality.Semantic.DeepEqual(old.Spec.Strategy.Steps, obj.Spec.Strategy.Steps) {
		return nil, nil
	}
	return nil, Validate(obj)
}

// ValidateDelete lets every deletion through.
func (RolloutValidator) ValidateDelete(context.Context, *fwv1.FirmwareRollout) (admission.Warnings, error) {
	return nil, nil
}

// Validate returns an Invalid error (the API server's usual refusal, with
// one cause per field) when an analysis step's condition does not compile
// or its query does not parse.
func Validate(obj *fwv1.FirmwareRollout) error {
	var errs field.ErrorList
	steps := field.NewPath("spec", "strategy", "steps")
	for i, st := range obj.Spec.Strategy.Steps {
		a := st.Analysis
		if a == nil {
			continue
		}
		p := steps.Index(i).Child("analysis")
		if _, err := analysis.CompileCondition(a.SuccessCondition); err != nil {
			errs = append(errs, field.Invalid(p.Child("successCondition"), a.SuccessCondition, err.Error()))
		}
		if err := analysis.ParseQuery(a.Query); err != nil {
			errs = append(errs, field.Invalid(p.Child("query"), a.Query, err.Error()))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(fwv1.GroupVersion.WithKind(fwv1.FirmwareRolloutKind).GroupKind(), obj.Name, errs)
}

// Setup registers the webhook with mgr's webhook server.
func Setup(mgr ctrl.Manager) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &fwv1.FirmwareRollout{}).WithValidator(RolloutValidator{}).
		WithValidatorCustomPath(Path).Complete(); err != nil {
		return fmt.Errorf("set up the FirmwareRollout webhook: %w", err)
	}
	return nil
}
