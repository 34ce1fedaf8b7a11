# Preflight: what a new account lacks, said at plan time in words an admin can act on, before AWS
# refuses the apply halfway through. The zone check is a postcondition in locals.tf (a hard error:
# no apply can work); the vCPU quota check is here.
#
# New accounts often have a quota of 0 vCPUs for GPU instances, and RunInstances then fails with
# VcpuLimitExceeded (MaxSpotInstanceCountExceeded for spot, whose quotas are separate). A `check`
# block, so a warning, not an error: the scoped data source reads the quota through the Service
# Quotas API, and that read can fail for reasons that say nothing about the quota (an admin policy
# without servicequotas:GetServiceQuota, a partition or endpoint that doesn't serve it); only
# inside a check block does such a failure leave the plan usable. And an increase requested
# earlier may be granted between plan and apply. The warning comes before the apply's confirmation
# prompt.

locals {
  # The EC2 On-Demand vCPU quota that instance_type counts against (Service Quotas codes): by the
  # leading letters of its family, the longer first (dl1 is DL, d3 Standard; inf2 Inf, i4i
  # Standard; trn1 Trn, t3 Standard); every other family counts against Standard.
  instance_family = regex("^[a-z]+", var.instance_type)
  vcpu_quotas = {
    dl  = { code = "L-6E869C2A", name = "Running On-Demand DL instances" }
    hpc = { code = "L-F7808C92", name = "Running On-Demand HPC instances" }
    inf = { code = "L-1945791B", name = "Running On-Demand Inf instances" }
    trn = { code = "L-2C3B7624", name = "Running On-Demand Trn instances" }
    vt  = { code = "L-DB2E81BA", name = "Running On-Demand G and VT instances" }
    g   = { code = "L-DB2E81BA", name = "Running On-Demand G and VT instances" }
    p   = { code = "L-417A185B", name = "Running On-Demand P instances" }
    f   = { code = "L-74FC7D96", name = "Running On-Demand F instances" }
    x   = { code = "L-7295265B", name = "Running On-Demand X instances" }
    u   = { code = "L-43DA4232", name = "Running On-Demand High Memory instances" }
  }
  standard_vcpu_quota = { code = "L-1216C47A", name = "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" }
  # Spot instances (market = "spot") count against quotas of their own, which a new account has
  # at 0 even where its on-demand quota is fine (RunInstances then fails with
  # MaxSpotInstanceCountExceeded). HPC and High Memory have no spot; a family not listed here
  # (Trn) is checked against its on-demand quota.
  spot_vcpu_quotas = {
    dl       = { code = "L-85EED4F7", name = "All DL Spot Instance Requests" }
    inf      = { code = "L-B5D1601B", name = "All Inf Spot Instance Requests" }
    vt       = { code = "L-3819A6DF", name = "All G and VT Spot Instance Requests" }
    g        = { code = "L-3819A6DF", name = "All G and VT Spot Instance Requests" }
    p        = { code = "L-7212CCBC", name = "All P Spot Instance Requests" }
    f        = { code = "L-88CF9481", name = "All F Spot Instance Requests" }
    x        = { code = "L-E3A00192", name = "All X Spot Instance Requests" }
    standard = { code = "L-34B43A08", name = "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests" }
  }
  vcpu_quota_family = [for prefix in ["dl", "hpc", "inf", "trn", "vt", "g", "p", "f", "x", "u"] : prefix if startswith(local.instance_family, prefix)]
  quota_family      = length(local.vcpu_quota_family) > 0 ? local.vcpu_quota_family[0] : "standard"
  spot_quota        = var.market == "spot" && contains(keys(local.spot_vcpu_quotas), local.quota_family)
  vcpu_quota = (
    local.spot_quota ? local.spot_vcpu_quotas[local.quota_family] :
    local.quota_family == "standard" ? local.standard_vcpu_quota : local.vcpu_quotas[local.quota_family]
  )
  # What AWS answers when the quota is too small.
  vcpu_quota_error = local.spot_quota ? "MaxSpotInstanceCountExceeded" : "VcpuLimitExceeded"
}

# The instance type's vCPUs (a check block holds one data source: the quota, the read that may fail).
data "aws_ec2_instance_type" "selected" {
  instance_type = var.instance_type
}

check "gpu_vcpu_quota" {
  data "aws_servicequotas_service_quota" "vcpus" {
    service_code = "ec2"
    quota_code   = local.vcpu_quota.code
  }

  assert {
    condition     = data.aws_servicequotas_service_quota.vcpus.value >= data.aws_ec2_instance_type.selected.default_vcpus
    error_message = "This account's EC2 quota \"${local.vcpu_quota.name}\" in ${var.region} is ${data.aws_servicequotas_service_quota.vcpus.value} vCPUs, and instance_type ${var.instance_type} needs ${data.aws_ec2_instance_type.selected.default_vcpus}: AWS will refuse to start the instance (${local.vcpu_quota_error}). Request at least ${data.aws_ec2_instance_type.selected.default_vcpus} in the Service Quotas console (Amazon EC2 > ${local.vcpu_quota.name}) or with `aws service-quotas request-service-quota-increase --service-code ec2 --quota-code ${local.vcpu_quota.code} --desired-value ${data.aws_ec2_instance_type.selected.default_vcpus} --region ${var.region}`, and run terraform apply again once AWS has granted it (minutes to days)."
  }
}
