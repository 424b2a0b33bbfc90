package console_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the browser tests' screenshots to docs/console/")

// Time bounds of the browser tests: starting the browser, one scenario,
// one wait for the page to show something.
const (
	browserStart = time.Minute
	scenario     = 3 * time.Minute
	pageWait     = time.Minute
)

// errNoApt says chromium is missing and cannot be installed here.
var errNoApt = errors.New("chromium is not installed and apt-get cannot install it here")

var (
	chromiumOnce sync.Once
	chromiumPath string
	chromiumErr  error
)

// chromium returns the path of Debian's chromium, installing it with apt
// when it is missing, as CI (root) does. It skips the test only when apt
// is impossible (not root, or no apt-get); a failed installation fails it.
func chromium(t *testing.T) string {
	t.Helper()
	chromiumOnce.Do(func() { chromiumPath, chromiumErr = findOrInstallChromium() })
	if errors.Is(chromiumErr, errNoApt) {
		t.Skipf("browser tests skipped: %v (install Debian's chromium: apt-get install -y chromium)", chromiumErr)
	}
	require.NoError(t, chromiumErr, "installing chromium with apt-get")
	return chromiumPath
}

func findOrInstallChromium() (string, error) {
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w: not root", errNoApt)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("%w: %v", errNoApt, err)
	}
	if err := aptGet("install", "-y", "chromium"); err != nil {
		if err := aptGet("update"); err != nil { // a fresh machine has no package lists yet
			return "", err
		}
		if err := aptGet("install", "-y", "chromium"); err != nil {
			return "", err
		}
	}
	return exec.LookPath("chromium")
}

// aptGet runs apt-get with args, waiting for another apt to finish.
func aptGet(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-o", "DPkg::Lock::Timeout=300"}, args...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, lastLines(string(out), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// tab is a headless Chromium tab on w's console. It reaches the console as
// http://localhost:…, where browsers accept Secure cookies without TLS.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// openTab starts a fresh browser (its own profile) for one scenario; it
// stops when the test ends or the scenario's time is up.
func (w *world) openTab(t *testing.T) *tab {
	t.Helper()
	alloc, stopAlloc := chromedp.NewExecAllocator(context.Background(), browserFlags(chromium(t), t.TempDir())...)
	t.Cleanup(stopAlloc)
	ctx, stop := chromedp.NewContext(alloc)
	t.Cleanup(stop)
	timer := time.AfterFunc(browserStart, stop)
	err := chromedp.Do(ctx) // starts the browser, with no deadline of its own
	timer.Stop()
	require.NoError(t, err, "starting chromium")
	bounded, cancel := context.WithTimeout(ctx, scenario)
	t.Cleanup(cancel)
	return &tab{t: t, ctx: bounded, base: strings.Replace(w.srv.URL, "127.0.0.1", "localhost", 1)}
}

// browserFlags runs chromium headless, talking to nothing but loopback:
// no background networking, QUIC, component updates or sync, and every
// host name but localhost unresolvable.
func browserFlags(path, profile string) []chromedp.ExecAllocatorOption {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 900),
		chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true), chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	return opts
}

// open navigates to path and returns the answer's status.
func (b *tab) open(path string) int {
	b.t.Helper()
	res, err := chromedp.RunResponse(b.ctx, chromedp.Navigate(b.base+path))
	require.NoError(b.t, err, "open %s", path)
	return int(res.Status)
}

// click clicks the element sel, which loads a page, and returns its status.
func (b *tab) click(sel string) int {
	b.t.Helper()
	res, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(sel)))
	require.NoError(b.t, err, "click %s", sel)
	return int(res.Status)
}

// typeInto types text into the input sel.
func (b *tab) typeInto(sel, text string) {
	b.t.Helper()
	require.NoError(b.t, chromedp.Do(b.ctx, chromedp.SendKeys(chromedp.CSS(sel), text)), "type into %s", sel)
}

// text returns the text of the element sel.
func (b *tab) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.TextContent(chromedp.CSS(sel)))
	require.NoError(b.t, err, "text of %s", sel)
	return strings.TrimSpace(s)
}

// eval returns the value of a JavaScript expression in the page.
func eval[T any](b *tab, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	require.NoError(b.t, err, "evaluate %s", expr)
	return v
}

// has reports whether the page has an element sel.
func (b *tab) has(sel string) bool {
	b.t.Helper()
	return eval[bool](b, "document.querySelector("+strconv.Quote(sel)+") !== null")
}

// waitFor waits until the JavaScript condition holds in the page, across
// a reload of the page.
func (b *tab) waitFor(cond string) {
	b.t.Helper()
	deadline := time.Now().Add(pageWait)
	for {
		_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(time.Until(deadline)),
			chromedp.WithPollingInterval(50*time.Millisecond)))
		if err == nil {
			return
		}
		if !reloaded(err) || time.Now().After(deadline) {
			require.NoError(b.t, err, "waiting for %s", cond)
		}
	}
}

// reloaded reports whether err says the page went away under a script:
// it was reloaded or left.
func reloaded(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Cannot find context with specified id") ||
		strings.Contains(msg, "Execution context was destroyed") || strings.Contains(msg, "Inspected target navigated or closed")
}

// waitText waits until the element sel shows want.
func (b *tab) waitText(sel, want string) {
	b.t.Helper()
	b.waitFor(fmt.Sprintf("(document.querySelector(%s)?.textContent || '').includes(%s)", strconv.Quote(sel), strconv.Quote(want)))
}

// post posts form fields from the page with fetch, as a forged or
// hand-made form would, and returns the status.
func (b *tab) post(path string, fields map[string]string) int {
	b.t.Helper()
	var pairs []string
	for k, v := range fields {
		pairs = append(pairs, strconv.Quote(k)+":"+strconv.Quote(v))
	}
	return eval[int](b, fmt.Sprintf(`fetch(%s, {method: "POST", credentials: "same-origin", redirect: "manual",
		body: new URLSearchParams({%s})}).then(r => r.status)`, strconv.Quote(path), strings.Join(pairs, ",")))
}

// screenshot writes the viewport to docs/console/name.png with
// -update-screenshots; ordinary runs write nothing.
func (b *tab) screenshot(name string) {
	b.t.Helper()
	if !*updateScreenshots {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot()) // the viewport, 1280×900
	require.NoError(b.t, err)
	dir := filepath.Join(vaulttest.RepoRoot(b.t), "docs", "console")
	require.NoError(b.t, os.MkdirAll(dir, 0o755))
	require.NoError(b.t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// signIn signs in through the sign-in form with key.
func (b *tab) signIn(key string) {
	b.t.Helper()
	require.Equal(b.t, http.StatusOK, b.open("/console/login"))
	b.typeInto("#api_key", key)
	require.Equal(b.t, http.StatusOK, b.click("button[type=submit]"))
	b.waitText("h1", "Overview")
}
