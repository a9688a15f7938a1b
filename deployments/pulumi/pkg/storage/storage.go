// Package storage makes the lake's bucket on any S3-compatible object store through
// pulumi-aws pointed at that store's endpoint (path-style, AWS' own account and region checks
// off), with access keys that come from stack config secrets.
package storage

import (
	"fmt"
	"regexp"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// S3Spec is an S3-compatible endpoint and the bucket to make there.
type S3Spec struct {
	// Endpoint is the store's URL, e.g. https://fsn1.your-objectstorage.com.
	Endpoint string
	// Region is the store's region name (Hetzner: the location, e.g. fsn1).
	Region          string
	Bucket          string
	AccessKeyID     pulumi.StringOutput
	SecretAccessKey pulumi.StringOutput
	// Protect keeps `pulumi destroy` from deleting the bucket (prod).
	Protect bool
}

// Bucket is the bucket made.
type Bucket struct {
	Name     pulumi.StringOutput
	Provider *aws.Provider
}

var bucketNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

// ValidBucketName follows S3's rules for DNS-compatible names (what Hetzner requires).
func ValidBucketName(name string) error {
	if !bucketNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a valid bucket name (3-63 characters: lower-case letters, digits and '-', starting and ending with a letter or digit)", name)
	}
	return nil
}

// NewBucket makes the bucket (private, the store's default) through a provider of its own,
// so no AWS account is involved. No tags: not every S3-compatible store implements bucket
// tagging.
func NewBucket(ctx *pulumi.Context, name string, spec S3Spec, opts ...pulumi.ResourceOption) (*Bucket, error) {
	if err := ValidBucketName(spec.Bucket); err != nil {
		return nil, err
	}
	prov, err := aws.NewProvider(ctx, name+"-s3", &aws.ProviderArgs{
		Region:                    pulumi.String(spec.Region),
		AccessKey:                 spec.AccessKeyID,
		SecretKey:                 spec.SecretAccessKey,
		S3UsePathStyle:            pulumi.Bool(true),
		SkipCredentialsValidation: pulumi.Bool(true),
		SkipMetadataApiCheck:      pulumi.Bool(true),
		SkipRegionValidation:      pulumi.Bool(true),
		SkipRequestingAccountId:   pulumi.Bool(true),
		Endpoints: aws.ProviderEndpointArray{
			aws.ProviderEndpointArgs{S3: pulumi.String(spec.Endpoint)},
		},
	}, opts...)
	if err != nil {
		return nil, err
	}
	b, err := s3.NewBucketV2(ctx, name, &s3.BucketV2Args{
		Bucket:       pulumi.String(spec.Bucket),
		ForceDestroy: pulumi.Bool(false),
	}, append(opts, pulumi.Provider(prov), pulumi.Protect(spec.Protect))...)
	if err != nil {
		return nil, err
	}
	return &Bucket{Name: b.Bucket, Provider: prov}, nil
}
