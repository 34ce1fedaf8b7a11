output "instance_id" {
  description = "Id of the GPU instance."
  value       = aws_instance.jupyter.id
}

output "ssh_command" {
  description = "SSH into the instance while it runs (its public name changes at every start, so the command looks it up)."
  value       = "ssh -i ${var.identity_file_path} ubuntu@$(aws ec2 describe-instances --profile ${var.credentials_profile} --region ${var.region} --instance-ids ${aws_instance.jupyter.id} --query 'Reservations[0].Instances[0].PublicDnsName' --output text)"
}

output "start_url" {
  description = "The start link to hand to teammates; add ?pass=<team password> (and &view=page for the page)."
  value       = "${aws_api_gateway_stage.v1.invoke_url}/start"
}

output "start_url_with_password" {
  description = "The start link with the password, as a page: terraform output -raw start_url_with_password."
  value       = "${aws_api_gateway_stage.v1.invoke_url}/start?pass=${urlencode(var.team_pass)}&view=page"
  sensitive   = true
}
