# Vault policy "varsel": the least the Varsel broker needs, nothing else.
# Written by deploy/vault/setup.sh. Tokens carrying it are created without the
# "default" policy, so the two auth/token paths below are all they get there.
# Paths are exact (no globs): e.g. transit/sign/varsel-checkpoint/sha2-256 or
# secret/data/varsel/other are denied.

# The subject key (KV v2 mounted at secret/): read any version of it...
path "secret/data/varsel/subject-key" {
  capabilities = ["read"]
}

# ...and its metadata, to learn the current and older versions.
path "secret/metadata/varsel/subject-key" {
  capabilities = ["read"]
}

# Sign audit checkpoints with the ed25519 transit key; the private key never
# leaves Vault.
path "transit/sign/varsel-checkpoint" {
  capabilities = ["update"]
}

# Read the transit key's public half(s), per key version.
path "transit/keys/varsel-checkpoint" {
  capabilities = ["read"]
}

# The broker looks its own token up and renews it.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
