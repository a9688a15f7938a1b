package storage

import "testing"

func TestValidBucketName(t *testing.T) {
	for _, ok := range []string{"philotes-dev-1a2b3c4d", "abc", "a1-b2"} {
		if err := ValidBucketName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"ab", "Philotes", "-lake", "lake-", "lake_1", "a.b", string(make([]byte, 64))} {
		if ValidBucketName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
