package stack

import (
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/contabo"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/exoscale"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/hetzner"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/ovhcloud"
	"github.com/philotes/philotes/deployments/pulumi/pkg/providers/scaleway"
)

func init() {
	RegisterProvider("hetzner", func() providers.CloudProvider { return hetzner.New() })
	RegisterProvider("ovhcloud", ovhcloud.New)
	RegisterProvider("scaleway", scaleway.New)
	RegisterProvider("exoscale", exoscale.New)
	RegisterProvider("contabo", contabo.New)
}
