// Package analysis measures a rollout's analysis step: it renders the step's
// PromQL template, sends the query to a Prometheus server's HTTP API
// (/api/v1/query, with a bearer token, basic auth and a CA from the
// rollout's Secret), and evaluates the step's CEL success condition over
// the result.
//
// It is an adapter: the controller declares what it needs (an Analyzer)
// and internal/app wires a *Client to it. It never imports controllers.
//
// The condition and the template are checked with CompileCondition and
// ParseQuery, which the admission webhook (internal/admission) runs when a
// rollout is applied, so a condition that does not compile is refused by
// the API server with the compiler's message.
package analysis
