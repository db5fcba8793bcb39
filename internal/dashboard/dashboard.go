// Package dashboard serves `kubectl stationfleet dashboard`: a web page on
// loopback that shows every FirmwareRollout of a namespace (or of all
// namespaces) live, one rollout's per-station outcomes and its progress over
// time, and pauses, resumes and aborts rollouts with the user's own
// credentials.
//
// The server watches the rollouts through the API server (an informer over
// the user's kubeconfig, so the user's RBAC applies) and pushes every change
// to the open pages as Server-Sent Events. The page is plain HTML, CSS and
// JavaScript embedded in the binary: it needs no network beyond the loopback
// connection to this server.
//
// What a station's outcome is and what pause, resume and abort do are the
// CLI's business (the controller's rules, through internal/rules): the
// server reaches them through the small Controller and StationSource
// interfaces that internal/cli implements, so this package never imports
// the CLI nor the controller.
//
// The server acts with the user's credentials, so it trusts only the page it
// served itself: every request must carry this run's random token (in the
// URL printed at start, then in an HttpOnly, SameSite=Strict cookie), name
// this server as its Host (no DNS rebinding), and every action must come
// from the same origin (net/http's CrossOriginProtection) with the token in
// a request header as well.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

//go:embed assets
var assets embed.FS

// Action is one of the imperative rollout commands the page offers.
type Action string

// The actions the page offers, named as the CLI's commands.
const (
	ActionPause  Action = "pause"
	ActionResume Action = "resume"
	ActionAbort  Action = "abort"
)

// Actions are the page's buttons, in order.
var Actions = []Action{ActionPause, ActionResume, ActionAbort}

// Controller carries out the rollout commands with the CLI's rules
// (internal/cli implements it).
type Controller interface {
	// Check says why act does not apply to obj now (nil when it does),
	// without writing anything; the page greys the button out with the
	// reason.
	Check(act Action, obj *fwv1.FirmwareRollout) error
	// Control reads the rollout namespace/name, decides with the same rules
	// and patches it. It returns what to tell the user. A rule's refusal is
	// a *RefusedError; the API server's refusals (Forbidden, Conflict, ...)
	// are returned as the client returned them (wrapped).
	Control(ctx context.Context, act Action, namespace, name string) (string, error)
}

// RefusedError is a command the rules refuse for the rollout's state
// (pausing a completed rollout, ...). The page shows its message.
type RefusedError struct{ Err error }

// Error is the rules' refusal.
func (e *RefusedError) Error() string { return e.Err.Error() }

// Unwrap returns the refusal.
func (e *RefusedError) Unwrap() error { return e.Err }

// Station is one row of a rollout's stations table.
type Station struct {
	// ID is the device id (the station EUI).
	ID string `json:"id"`
	// Batch is the step whose batch wrote the station; 0 when not written.
	Batch int `json:"batch,omitempty"`
	// Outcome is the station's outcome in the rollout.
	Outcome fwv1.StationOutcome `json:"outcome"`
	// Reason is the failure or skip reason, or why it waits.
	Reason string `json:"reason,omitempty"`
	// Message says more, for a person.
	Message string `json:"message,omitempty"`
	// Package is the package the station last reported to CUPS.
	Package string `json:"package,omitempty"`
	// UpdatesServed is how often CUPS sent it this rollout's update.
	UpdatesServed int `json:"updatesServed"`
	// LastSeen is when it last polled CUPS (nil: never).
	LastSeen *time.Time `json:"lastSeen,omitempty"`
	// Tags are the user's twin tags with a scalar value (region, ring, ...).
	Tags map[string]string `json:"tags,omitempty"`
}

// StationSource reads the stations of a rollout from the twins and
// classifies them with the controller's rule (internal/cli implements it
// over the IoT Hub registry).
type StationSource interface {
	Stations(ctx context.Context, obj *fwv1.FirmwareRollout) ([]Station, error)
}

// Options configure a Server.
type Options struct {
	// Config reaches the API server as the user (their kubeconfig).
	Config *rest.Config
	// Namespace is the namespace to show; empty for all namespaces.
	Namespace string
	// Controller carries out pause, resume and abort.
	Controller Controller
	// Stations reads a rollout's stations; nil when IoT Hub is not
	// configured.
	Stations StationSource
	// StationsUnavailable says why Stations is nil (shown on the page).
	StationsUnavailable string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Context names the kubeconfig context, shown on the page.
	Context string
}

// Server is the dashboard's HTTP server and its watch on the rollouts.
type Server struct {
	opts  Options
	token string
	store *store
	page  *template.Template
	// allowedHosts are the Host headers that name this server; set by
	// Serve from the listener's address.
	allowedHosts map[string]bool

	stationsMu    sync.Mutex
	stationsCache map[string]stationsAnswer
}

// stationsAnswer is a cached answer of the stations endpoint.
type stationsAnswer struct {
	at   time.Time
	body []byte
}

// stationsCacheTTL is how long one rollout's stations answer is reused, so
// that many open pages cost IoT Hub one query a while.
const stationsCacheTTL = 2 * time.Second

// New returns a server; Serve starts it.
func New(opts Options) (*Server, error) {
	if opts.Config == nil {
		return nil, errors.New("dashboard: no API server configuration")
	}
	if opts.Controller == nil {
		return nil, errors.New("dashboard: no Controller")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("dashboard token: %w", err)
	}
	page, err := template.ParseFS(assets, "assets/index.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard page: %w", err)
	}
	s := &Server{opts: opts, token: hex.EncodeToString(b), page: page, stationsCache: map[string]stationsAnswer{}}
	s.store = newStore(opts.Now, func(obj *fwv1.FirmwareRollout) map[Action]string {
		out := map[Action]string{}
		for _, act := range Actions {
			if err := opts.Controller.Check(act, obj); err != nil {
				out[act] = err.Error()
			}
		}
		return out
	})
	return s, nil
}

// Listen opens a loopback listener on addr, refusing any other address:
// the server acts with the user's credentials and must not be reachable
// from the network.
func Listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--address %q: %w", addr, err)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("--address %q: the dashboard acts with your credentials and listens on loopback only (127.0.0.1, ::1 or localhost); reach it from another machine through an SSH tunnel", addr)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (in use? choose another port with --address, e.g. 127.0.0.1:0): %w", addr, err)
	}
	return ln, nil
}

// URL is the address to open: it carries this run's token, so keep it to
// yourself.
func (s *Server) URL(ln net.Listener) string {
	return "http://" + ln.Addr().String() + "/?token=" + s.token
}

// Serve watches the rollouts and serves the page on ln until ctx ends. It
// fails at once when the user may not list rollouts.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	log := ctrl.LoggerFrom(ctx)
	s.allowedHosts = hostsFor(ln.Addr())
	if err := s.store.start(ctx, s.opts.Config, s.opts.Namespace); err != nil {
		_ = ln.Close()
		return err
	}
	// Requests carry ctx's logger; they end with the server, not with ctx.
	base := context.WithoutCancel(ctx)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return base }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close() // event streams do not end by themselves
	}()
	log.V(1).Info("dashboard serving", "address", ln.Addr().String())
	err := srv.Serve(ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve the dashboard: %w", err)
}

// hostsFor lists the Host headers that name a server listening on addr.
func hostsFor(addr net.Addr) map[string]bool {
	_, port, _ := net.SplitHostPort(addr.String())
	hosts := map[string]bool{addr.String(): true}
	for _, h := range []string{"127.0.0.1", "localhost", "[::1]"} {
		hosts[h+":"+port] = true
	}
	return hosts
}

// cookieName names the token cookie; cookies are not kept apart by port,
// so it carries the port.
func (s *Server) cookieName(host string) string {
	_, port, _ := net.SplitHostPort(host)
	return "stationfleet-dashboard-" + port
}

// Handler is the dashboard's HTTP handler, with the checks described in the
// package comment in front.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /rollouts/{namespace}/{name}", s.servePage)
	mux.HandleFunc("GET /api/rollouts", s.serveRollouts)
	mux.HandleFunc("GET /api/events", s.serveEvents)
	mux.HandleFunc("GET /api/rollouts/{namespace}/{name}/stations", s.serveStations)
	mux.HandleFunc("POST /api/rollouts/{namespace}/{name}/{action}", s.serveAction)
	cop := http.NewCrossOriginProtection()
	return s.guard(cop.Handler(mux))
}

// guard lets through only requests that name this server and carry the
// token; it turns a valid ?token= into the cookie.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		if s.allowedHosts != nil && !s.allowedHosts[r.Host] {
			http.Error(w, "this dashboard answers only to its own loopback address", http.StatusForbidden)
			return
		}
		if t := r.URL.Query().Get("token"); t != "" && r.Method == http.MethodGet {
			if !s.validToken(t) {
				http.Error(w, "wrong token: open the URL `kubectl stationfleet dashboard` printed for this run", http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: s.cookieName(r.Host), Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			u := *r.URL
			q := u.Query()
			q.Del("token")
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		c, err := r.Cookie(s.cookieName(r.Host))
		if err != nil || !s.validToken(c.Value) {
			http.Error(w, "open the URL `kubectl stationfleet dashboard` printed: it carries this run's token", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !s.validToken(r.Header.Get(tokenHeader)) {
			http.Error(w, "missing or wrong "+tokenHeader+" header", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenHeader carries the token on actions, which a cross-site form cannot
// set.
const tokenHeader = "X-Stationfleet-Token"

func (s *Server) validToken(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

// pageData fills assets/index.html.
type pageData struct {
	Token, Namespace, Context string
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	ns := s.opts.Namespace
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.page.Execute(w, pageData{Token: s.token, Namespace: ns, Context: s.opts.Context}); err != nil {
		ctrl.LoggerFrom(r.Context()).Error(err, "render the dashboard page")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is the body of a failed API request.
type apiError struct {
	Error string `json:"error"`
	// Status is the API server's HTTP status when it refused (403, 409, ...).
	Status int `json:"status,omitempty"`
}

func (s *Server) serveRollouts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.store.snapshot())
}

func (s *Server) serveStations(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	if s.opts.Stations == nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: s.opts.StationsUnavailable})
		return
	}
	obj := s.store.get(ns, name)
	if obj == nil {
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("FirmwareRollout %s/%s not found", ns, name)})
		return
	}
	key := ns + "/" + name
	s.stationsMu.Lock()
	cached, ok := s.stationsCache[key]
	s.stationsMu.Unlock()
	if ok && s.opts.Now().Sub(cached.at) < stationsCacheTTL {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(cached.body)
		return
	}
	rows, err := s.opts.Stations.Stations(r.Context(), obj)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{Error: err.Error()})
		return
	}
	if rows == nil {
		rows = []Station{}
	}
	body, err := json.Marshal(map[string]any{"stations": rows, "at": s.opts.Now().UTC()})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	s.stationsMu.Lock()
	s.stationsCache[key] = stationsAnswer{at: s.opts.Now(), body: body}
	s.stationsMu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

func (s *Server) serveAction(w http.ResponseWriter, r *http.Request) {
	ns, name, act := r.PathValue("namespace"), r.PathValue("name"), Action(r.PathValue("action"))
	known := false
	for _, a := range Actions {
		known = known || a == act
	}
	if !known {
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("unknown action %q: use pause, resume or abort", act)})
		return
	}
	log := ctrl.LoggerFrom(r.Context()).WithValues("rollout", ns+"/"+name, "action", string(act))
	msg, err := s.opts.Controller.Control(r.Context(), act, ns, name)
	if err != nil {
		status := http.StatusBadGateway
		var refused *RefusedError
		var apiStatus apierrors.APIStatus
		switch {
		case errors.As(err, &refused):
			status = http.StatusConflict
		case errors.As(err, &apiStatus) && apiStatus.Status().Code != 0:
			status = int(apiStatus.Status().Code)
		}
		log.Info("dashboard action refused", "status", status, "error", err.Error())
		writeJSON(w, status, apiError{Error: err.Error(), Status: status})
		return
	}
	log.Info("dashboard action done")
	writeJSON(w, http.StatusOK, map[string]string{"message": msg})
}

// serveEvents streams the rollouts: a "snapshot" event with all of them,
// then a "rollout" event per changed rollout and a "deleted" event per
// deleted one, and "status" when the watch fails or recovers.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	// Only the rollout a page shows in full (?rollout=namespace/name) comes
	// with its progress history; the others' would be sent for nothing.
	full := r.URL.Query().Get("rollout")
	trim := func(v RolloutView) RolloutView {
		if v.Namespace+"/"+v.Name != full {
			v.History = nil
		}
		return v
	}
	sub := s.store.subscribe()
	defer s.store.unsubscribe(sub)
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	snap := s.store.snapshot()
	for i := range snap.Rollouts {
		snap.Rollouts[i] = trim(snap.Rollouts[i])
	}
	if err := send("snapshot", snap); err != nil {
		return
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-sub.wake:
			keys, statusChanged := sub.drain()
			if statusChanged {
				if err := send("status", s.store.watchStatus()); err != nil {
					return
				}
			}
			for _, k := range keys {
				v := s.store.view(k)
				if v == nil {
					ns, name, _ := strings.Cut(k, "/")
					if err := send("deleted", map[string]string{"namespace": ns, "name": name}); err != nil {
						return
					}
					continue
				}
				if err := send("rollout", trim(*v)); err != nil {
					return
				}
			}
		}
	}
}
