//! Tenancy: which organizations and environments a token's client may use.

use std::collections::HashSet;

use super::error::ApiError;

/// Organizations or environments a client may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameScope {
    All,
    Only(HashSet<String>),
}

impl NameScope {
    /// `["*"]` is every name; a list, those names.
    pub fn of(names: &[String]) -> NameScope {
        if names.iter().any(|n| n == "*") {
            NameScope::All
        } else {
            NameScope::Only(names.iter().cloned().collect())
        }
    }

    fn allows(&self, name: &str) -> bool {
        match self {
            NameScope::All => true,
            NameScope::Only(set) => set.contains(name),
        }
    }
}

/// Which stores a client may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreScope {
    /// None at all (a gateway's token, by default).
    Denied,
    Within {
        organizations: NameScope,
        environments: NameScope,
    },
}

impl StoreScope {
    /// 403 unless `client` may use the stores of `org` / `env`.
    pub fn check(&self, client: &str, org: &str, env: &str) -> Result<(), ApiError> {
        let allowed = match self {
            StoreScope::Denied => false,
            StoreScope::Within {
                organizations,
                environments,
            } => organizations.allows(org) && environments.allows(env),
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token {client:?} may not use the stores of organization {org:?}, environment {env:?}"
            )))
        }
    }
}

/// The organization and environment of a store API path
/// (`/api/v1/organizations/{org}/environments/{env}/...`).
pub fn org_and_env(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/v1/organizations/")?;
    let (org, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("environments/")?;
    let env = rest.split('/').next()?;
    Some((org, env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_allow_only_their_names() {
        let acme_prod = StoreScope::Within {
            organizations: NameScope::of(&["acme".into()]),
            environments: NameScope::of(&["prod".into()]),
        };
        assert!(acme_prod.check("t", "acme", "prod").is_ok());
        assert!(acme_prod.check("t", "acme", "dev").is_err());
        assert!(acme_prod.check("t", "other", "prod").is_err());
        assert!(StoreScope::Denied.check("t", "acme", "prod").is_err());
        let all = StoreScope::Within {
            organizations: NameScope::of(&["*".into()]),
            environments: NameScope::All,
        };
        assert!(all.check("t", "any", "thing").is_ok());
    }

    #[test]
    fn the_path_names_the_org_and_env() {
        assert_eq!(
            org_and_env("/api/v1/organizations/acme/environments/prod/stores/s/keys/k"),
            Some(("acme", "prod"))
        );
        assert_eq!(
            org_and_env("/api/v1/organizations/acme/environments/prod/stores"),
            Some(("acme", "prod"))
        );
        assert_eq!(org_and_env("/api/v1/status/ready"), None);
    }
}
