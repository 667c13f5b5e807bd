# Vault policy for an agency's Varsel portal: sign the agency's broker
# requests with its Transit key (the private key never leaves Vault) and
# read the key's public half; nothing else. NAME is the agency's key, e.g.
# transit/keys/varsel-agency-oslo-pd. Replace NAME before writing the policy:
#   sed 's/NAME/varsel-agency-oslo-pd/' portal-policy.hcl | vault policy write varsel-portal -
path "transit/sign/NAME" {
  capabilities = ["update"]
}

path "transit/keys/NAME" {
  capabilities = ["read"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
