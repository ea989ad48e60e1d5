// Command release builds a versioned release of lifecycle-worker from the
// checked-out commit: static binaries for linux/amd64 and linux/arm64 (cgo,
// for SQLite, linked statically), a CycloneDX SBOM per binary, SHA256SUMS,
// and, given an OpenSSH key, a detached signature of the checksums.
//
//	go run ./tools/release -version v1.2.0 -out dist -sign-key ~/.ssh/lifecycle-worker-release
//
// Builds are reproducible: the version, commit and commit time are the only
// inputs besides the source and the toolchain (-trimpath, no VCS stamp, no
// build id), so two builds of one tag give the same bytes. darwin is not
// built: cgo needs the macOS SDK, which only a Mac has.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

var semver = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$`)

// compilers are the C cross compilers cgo uses per architecture.
var compilers = map[string]string{"amd64": "gcc", "arm64": "aarch64-linux-gnu-gcc"}

func main() {
	version := flag.String("version", "", "the release version, a semantic version tag (default: the tag on HEAD)")
	out := flag.String("out", "dist", "output directory (must not exist)")
	archs := flag.String("arch", "amd64,arm64", "linux architectures to build")
	signKey := flag.String("sign-key", "", "an OpenSSH private key (ssh-keygen -t ed25519) to sign SHA256SUMS with")
	image := flag.Bool("image", true, "also build the amd64 container image (with podman or docker) and save it as an OCI archive")
	flag.Parse()
	if err := release(*version, *out, strings.Split(*archs, ","), *signKey, *image); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func release(version, out string, archs []string, signKey string, image bool) error {
	if version == "" {
		tag, err := git("describe", "--tags", "--exact-match", "HEAD")
		if err != nil {
			return fmt.Errorf("no -version given and HEAD has no tag (git tag v1.2.3 first): %w", err)
		}
		version = tag
	}
	if !semver.MatchString(version) {
		return fmt.Errorf("version %q is not a semantic version tag (v1.2.3)", version)
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s exists; releases are written to a new directory", out)
	}
	commit, err := git("rev-parse", "HEAD")
	if err != nil {
		return err
	}
	date, err := git("log", "-1", "--format=%cI")
	if err != nil {
		return err
	}
	if dirty, _ := git("status", "--porcelain", "--untracked-files=no"); dirty != "" {
		fmt.Fprintln(os.Stderr, "release: warning: the work tree has changes; the binaries are not the commit's")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var files []string
	for _, arch := range archs {
		cc, ok := compilers[arch]
		if !ok {
			return fmt.Errorf("architecture %q: not one of amd64, arm64", arch)
		}
		if _, err := exec.LookPath(cc); err != nil {
			return fmt.Errorf("linux/%s needs the C compiler %s (Debian: apt-get install %s)", arch, cc, map[string]string{"gcc": "gcc", "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu"}[cc])
		}
		bin := fmt.Sprintf("lifecycle-worker_%s_linux_%s", version, arch)
		ldflags := fmt.Sprintf(`-s -w -buildid= -linkmode external -extldflags "-static" -X main.version=%s -X main.commit=%s -X main.date=%s`, version, commit, date)
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-tags", "osusergo,netgo,sqlite_omit_load_extension",
			"-ldflags", ldflags, "-o", filepath.Join(out, bin), "./cmd/lifecycle-worker")
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=1", "CC="+cc, "SOURCE_DATE_EPOCH="+epoch(date))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build linux/%s: %w", arch, err)
		}
		fmt.Fprintf(os.Stderr, "built %s in %s\n", bin, time.Since(start).Round(time.Second))
		sbom := bin + ".cdx.json"
		if err := writeSBOM(filepath.Join(out, bin), filepath.Join(out, sbom), version, arch, date); err != nil {
			return err
		}
		files = append(files, bin, sbom)
	}
	if image {
		img, err := buildImage(out, version, date)
		if err != nil {
			return err
		}
		files = append(files, img...)
	}
	sums, err := checksums(out, files)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "SHA256SUMS"), []byte(sums), 0o644); err != nil {
		return err
	}
	if signKey != "" {
		cmd := exec.Command("ssh-keygen", "-Y", "sign", "-f", signKey, "-n", "file", filepath.Join(out, "SHA256SUMS"))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("sign SHA256SUMS: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "release %s (%s) in %s\n", version, commit, out)
	return nil
}

// buildImage builds the container image from the repository's Dockerfile
// with the amd64 binary just built (BINARY=prebuilt: no registry needed),
// stamped with the commit time, and saves it as an OCI archive with an SBOM.
func buildImage(out, version, date string) ([]string, error) {
	engine := "podman"
	if _, err := exec.LookPath(engine); err != nil {
		engine = "docker"
		if _, err := exec.LookPath(engine); err != nil {
			return nil, errors.New("the image needs podman or docker (or -image=false)")
		}
	}
	bin := filepath.Join(out, fmt.Sprintf("lifecycle-worker_%s_linux_amd64", version))
	if _, err := os.Stat(bin); err != nil {
		return nil, errors.New("the image is built from the linux/amd64 binary: include amd64 in -arch")
	}
	ctx, err := os.MkdirTemp("", "lw-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(ctx)
	dist := filepath.Join(ctx, "dist")
	if err := os.MkdirAll(filepath.Join(dist, "empty"), 0o755); err != nil {
		return nil, err
	}
	copyFile := func(from, to string) error {
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o755)
	}
	if err := copyFile(bin, filepath.Join(dist, "lifecycle-worker")); err != nil {
		return nil, err
	}
	if err := copyFile("/etc/ssl/certs/ca-certificates.crt", filepath.Join(dist, "ca-certificates.crt")); err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	demo := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -buildid=", "-o", filepath.Join(dist, "demo-as"), "./examples/demo-as")
	demo.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := demo.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build demo-as: %v\n%s", err, b)
	}
	dockerfile, _ := filepath.Abs("Dockerfile")
	tag := "lifecycle-worker:" + version
	args := []string{"build", "-q", "--build-arg", "BINARY=prebuilt", "--build-arg", "VERSION=" + version, "-f", dockerfile, "-t", tag}
	if engine == "podman" {
		args = append(args, "--format", "docker", "--timestamp", epoch(date))
	}
	b := exec.Command(engine, append(args, ctx)...)
	b.Stderr = os.Stderr
	if err := b.Run(); err != nil {
		return nil, fmt.Errorf("build the image: %w", err)
	}
	archive := fmt.Sprintf("lifecycle-worker_%s_image_linux_amd64.tar", version)
	saveArgs := []string{"save", "-o", filepath.Join(out, archive)}
	if engine == "podman" {
		saveArgs = append(saveArgs, "--format", "oci-archive")
	}
	if err := exec.Command(engine, append(saveArgs, tag)...).Run(); err != nil {
		return nil, fmt.Errorf("save the image: %w", err)
	}
	// The image holds the amd64 binary: its SBOM is the binary's.
	sbom, err := os.ReadFile(bin + ".cdx.json")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(out, archive+".cdx.json"), sbom, 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "built image %s (%s)\n", tag, archive)
	return []string{archive, archive + ".cdx.json"}, nil
}

func git(args ...string) (string, error) {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func epoch(rfc3339 string) string {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		return "0"
	}
	return fmt.Sprint(t.Unix())
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func checksums(dir string, files []string) (string, error) {
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		sum, err := sha256File(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, f)
	}
	return b.String(), nil
}

// writeSBOM writes a CycloneDX 1.5 SBOM of binary: the modules `go version
// -m` finds in it (each a pkg:golang purl with its go.sum hash), the Go
// toolchain, and the SQLite library compiled in.
func writeSBOM(binary, path, version, arch, date string) error {
	out, err := exec.Command("go", "version", "-m", binary).Output()
	if err != nil {
		return fmt.Errorf("go version -m: %w", err)
	}
	sum, err := sha256File(binary)
	if err != nil {
		return err
	}
	type hash struct {
		Alg     string `json:"alg"`
		Content string `json:"content"`
	}
	type prop struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	type component struct {
		Type       string `json:"type"`
		BOMRef     string `json:"bom-ref,omitempty"`
		Name       string `json:"name"`
		Version    string `json:"version,omitempty"`
		PURL       string `json:"purl,omitempty"`
		Hashes     []hash `json:"hashes,omitempty"`
		Properties []prop `json:"properties,omitempty"`
	}
	main := component{Type: "application", BOMRef: "lifecycle-worker", Name: "lifecycle-worker", Version: version,
		PURL:   "pkg:golang/github.com/lifecycle-worker/lifecycle-worker@" + version + "?goos=linux&goarch=" + arch,
		Hashes: []hash{{Alg: "SHA-256", Content: sum}}}
	var comps []component
	var goVersion string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && strings.HasSuffix(f[0], ":") && goVersion == "":
			goVersion = f[1]
		case len(f) >= 3 && (f[0] == "dep" || f[0] == "=>"):
			c := component{Type: "library", Name: f[1], Version: f[2], PURL: "pkg:golang/" + f[1] + "@" + f[2], BOMRef: "pkg:golang/" + f[1] + "@" + f[2]}
			if len(f) >= 4 {
				c.Properties = []prop{{Name: "go:module:sum", Value: f[3]}}
			}
			comps = append(comps, c)
		}
	}
	if len(comps) == 0 {
		return errors.New("sbom: no modules found in the binary")
	}
	comps = append(comps, component{Type: "library", Name: "sqlite", BOMRef: "sqlite",
		Properties: []prop{{Name: "note", Value: "the SQLite amalgamation compiled in by github.com/mattn/go-sqlite3 (public domain)"}}})
	if goVersion != "" {
		comps = append(comps, component{Type: "application", Name: "go", Version: goVersion, BOMRef: "golang-toolchain",
			Properties: []prop{{Name: "role", Value: "toolchain the binary was built with"}}})
	}
	doc := map[string]any{
		"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
		"serialNumber": "urn:uuid:" + uuidFrom(sum),
		"metadata":     map[string]any{"timestamp": date, "component": main},
		"components":   comps,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// uuidFrom makes a stable UUID (version 5 layout) from a hex digest, so the
// SBOM of a reproducible build is reproducible too.
func uuidFrom(hexsum string) string {
	b, _ := hex.DecodeString(hexsum)
	b = b[:16]
	b[6] = (b[6] & 0x0f) | 0x50
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
