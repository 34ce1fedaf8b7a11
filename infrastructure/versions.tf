terraform {
  # 1.11: write-only arguments (value_wo) and ephemeral variables keep secrets out of the state.
  required_version = ">= 1.11"

  required_providers {
    # 5.100 is the oldest release this configuration is tested with (tests/infrastructure/
    # test_apply.py applies it against moto); 7.0 may rename or drop what it uses, so it is
    # excluded until someone checks it. The admin's `terraform init` takes the newest 6.x.
    # Terraform takes one required_providers block per module: the archive provider, used only
    # in lambda_package.tf, is required here too.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }
}
