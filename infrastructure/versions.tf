terraform {
  # 1.11: write-only arguments (value_wo) and ephemeral variables keep secrets out of the state.
  required_version = ">= 1.11"

  required_providers {
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
}
