package stack

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestStackFilesHoldNoSecret: every philotes: key in a stack file is one the program knows,
// secrets appear only as `secure:` values, and nothing in the files looks like a key,
// token or password.
func TestStackFilesHoldNoSecret(t *testing.T) {
	known := map[string]bool{}
	for _, k := range Keys {
		known[Namespace+":"+k] = true
	}
	secret := map[string]bool{"hcloud:token": true}
	for _, k := range SecretKeys {
		secret[Namespace+":"+k] = true
	}
	looksSecret := regexp.MustCompile(`(?i)-----BEGIN|postgres(ql)?://[^@\s]*:[^@\s]*@|\b[A-Za-z0-9]{64}\b`)
	files, _ := filepath.Glob(filepath.Join(projectDir(t), "Pulumi.*.yaml"))
	if len(files) != 3 {
		t.Fatalf("stack files %v, want dev, staging and prod", files)
	}
	for _, f := range files {
		stack := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Pulumi."), ".yaml")
		_, raw := stackFile(t, stack)
		for k, v := range raw {
			if strings.HasPrefix(k, Namespace+":") && !known[k] {
				t.Errorf("%s: unknown key %s", f, k)
			}
			if secret[k] {
				m, ok := v.(map[string]interface{})
				if _, isSecure := m["secure"]; !ok || !isSecure {
					t.Errorf("%s: %s is in plain text; it must be set with pulumi config set --secret", f, k)
				}
			}
		}
		text, _ := os.ReadFile(f)
		if loc := looksSecret.FindIndex(text); loc != nil {
			t.Errorf("%s holds something that looks like a secret at byte %d", f, loc[0])
		}
	}
}
