# The price per running hour behind the page's month-to-date cost estimate (the Lambda's
# PRICE_PER_HOUR_USD and PRICE_NOTE): price_per_hour_usd when the admin sets it, else the on-demand
# list price of instance_type in the region from the table below, else none (the page then shows
# hours only).
#
# Source: AWS EC2 On-Demand pricing (https://aws.amazon.com/ec2/pricing/on-demand/; the same
# figures as the AWS Price List API's AmazonEC2 offer), Linux, shared tenancy, USD per hour,
# written down on 2026-11-29 from the published list prices. The machines that build and test
# this project have no internet, so nothing re-checks them against the live page: list prices
# change rarely, but check the page when adding a row or a region.
# g6 is not offered in eu-west-1 (Ireland), hence no row there. Spot prices are left out on
# purpose: they move with demand, so for spot set price_per_hour_usd to a recent one (for example
# `aws ec2 describe-spot-price-history --instance-types g4dn.4xlarge
# --product-descriptions Linux/UNIX --max-items 5`).

locals {
  on_demand_prices = {
    "us-east-1" = {
      "g4dn.xlarge"  = 0.526
      "g4dn.2xlarge" = 0.752
      "g4dn.4xlarge" = 1.204
      "g4dn.8xlarge" = 2.176
      "g5.xlarge"    = 1.006
      "g5.2xlarge"   = 1.212
      "g5.4xlarge"   = 1.624
      "g6.xlarge"    = 0.8048
      "g6.2xlarge"   = 0.9776
      "g6.4xlarge"   = 1.3232
    }
    "us-west-2" = {
      "g4dn.xlarge"  = 0.526
      "g4dn.2xlarge" = 0.752
      "g4dn.4xlarge" = 1.204
      "g4dn.8xlarge" = 2.176
      "g5.xlarge"    = 1.006
      "g5.2xlarge"   = 1.212
      "g5.4xlarge"   = 1.624
      "g6.xlarge"    = 0.8048
      "g6.2xlarge"   = 0.9776
      "g6.4xlarge"   = 1.3232
    }
    "eu-west-1" = {
      "g4dn.xlarge"  = 0.587
      "g4dn.2xlarge" = 0.838
      "g4dn.4xlarge" = 1.342
      "g4dn.8xlarge" = 2.426
      "g5.xlarge"    = 1.123
      "g5.2xlarge"   = 1.35296
      "g5.4xlarge"   = 1.81287
    }
    "eu-central-1" = {
      "g4dn.xlarge"  = 0.658
      "g4dn.2xlarge" = 0.94
      "g4dn.4xlarge" = 1.505
      "g4dn.8xlarge" = 2.72
      "g5.xlarge"    = 1.258
      "g5.2xlarge"   = 1.5156
      "g5.4xlarge"   = 2.03081
      "g6.xlarge"    = 1.0064
      "g6.2xlarge"   = 1.22249
      "g6.4xlarge"   = 1.65466
    }
  }

  # The price of the configured type: after a capacity fallback the machine may run another type
  # for a while, which this estimate does not follow.
  list_price = try(local.on_demand_prices[var.region][var.instance_type], null)
  price      = var.price_per_hour_usd != null ? var.price_per_hour_usd : local.list_price
  # lambda_src reads these two (the contract: "" when unknown).
  price_per_hour_usd = local.price == null ? "" : tostring(local.price)
  price_note         = var.price_per_hour_usd != null ? "admin's price" : (local.list_price != null ? "list price" : "")
}
