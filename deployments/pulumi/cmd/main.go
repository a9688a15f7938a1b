// Command main is Philotes' Pulumi program: `pulumi up` in deployments/pulumi runs it.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/philotes/philotes/deployments/pulumi/pkg/stack"
)

func main() {
	pulumi.Run(stack.Run)
}
