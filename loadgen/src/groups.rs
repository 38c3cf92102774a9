//! Creating the planned groups on the gateway before a run, over its HTTP
//! API (`POST /v1/groups`, by the group's first member, who becomes a member
//! with the others listed).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::scenario::{plan, PlanError, ScenarioParams};

/// Why the groups could not be created.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    /// The scenario could not be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The target is not `ws://host:port/...`.
    #[error("cannot derive the HTTP address from {0}")]
    Target(String),
    /// The gateway refused or failed a request.
    #[error("creating group {index}: {message}")]
    Create {
        /// Which planned group.
        index: usize,
        /// What went wrong.
        message: String,
    },
}

/// Creates the run's groups on the gateway (scenarios with groups only) and
/// records their names in the configuration, so that every process plans
/// with the same `group:` channels.
pub fn prepare(cfg: &mut crate::config::RunConfig) -> Result<(), GroupsError> {
    use crate::scenario::ScenarioKind;
    let has_groups = matches!(
        cfg.scenario.kind,
        ScenarioKind::Groups | ScenarioKind::Churn | ScenarioKind::Mixed | ScenarioKind::Soak
    );
    if !has_groups || !cfg.scenario.group_names.is_empty() {
        return Ok(());
    }
    let names = create(&cfg.scenario, &cfg.target, cfg.token_secret.as_deref())?;
    cfg.scenario.group_names = names;
    Ok(())
}

/// `host:port` of a `ws://host:port/path` URL.
fn authority(target: &str) -> Result<&str, GroupsError> {
    // Several URLs (nodes of one cluster): the first creates the groups.
    let first = target.split(',').next().unwrap_or(target).trim();
    first
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| GroupsError::Target(target.to_string()))
}

/// Creates one group per planned group (`room:lg<run>-g<i>` in the plan
/// without names) and returns their `group:` names in plan order.
pub fn create(
    params: &ScenarioParams,
    target: &str,
    token_secret: Option<&str>,
) -> Result<Vec<String>, GroupsError> {
    let mut bare = params.clone();
    bare.group_names.clear();
    let p = plan(&bare)?;
    let prefix = format!("room:lg{}-g", bare.run_id);
    // Members of each planned group, in plan order.
    let mut groups: Vec<(usize, Vec<String>)> = Vec::new();
    for (id, name) in p.channels.iter().enumerate() {
        if let Some(g) = name
            .strip_prefix(&prefix)
            .and_then(|g| g.parse::<usize>().ok())
        {
            let members: Vec<String> = p
                .conns
                .iter()
                .filter(|c| c.joins.contains(&(id as u32)))
                .map(|c| c.user.clone())
                .collect();
            groups.push((g, members));
        }
    }
    groups.sort_by_key(|(g, _)| *g);
    let addr = authority(target)?;
    let mut names = Vec::with_capacity(groups.len());
    for (index, members) in groups {
        let Some((creator, others)) = members.split_first() else {
            return Err(GroupsError::Create {
                index,
                message: "a planned group has no member".into(),
            });
        };
        let name = post_group(addr, creator, others, token_secret)
            .map_err(|message| GroupsError::Create { index, message })?;
        names.push(name);
    }
    Ok(names)
}

fn post_group(
    addr: &str,
    creator: &str,
    others: &[String],
    token_secret: Option<&str>,
) -> Result<String, String> {
    let body = serde_json::json!({ "members": others }).to_string();
    let (path, auth) = match token_secret {
        Some(secret) => {
            let exp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_secs()
                + 3600;
            let t = chat_proto::auth::sign(secret.as_bytes(), creator, Some("loadgen-setup"), exp);
            (
                "/v1/groups".to_string(),
                format!("Authorization: Bearer {t}\r\n"),
            )
        }
        None => (
            format!("/v1/groups?user={creator}&device=loadgen-setup"),
            String::new(),
        ),
    };
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let status = out.get(9..12).unwrap_or("");
    let resp_body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    if status != "201" {
        return Err(format!("HTTP {status}: {resp_body}"));
    }
    let v: serde_json::Value = serde_json::from_str(resp_body).map_err(|e| e.to_string())?;
    v["channel"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no channel in {resp_body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_address_comes_from_the_websocket_url() {
        assert_eq!(
            authority("ws://127.0.0.1:8080/ws").ok(),
            Some("127.0.0.1:8080")
        );
        assert!(authority("http://x/ws").is_err());
        assert!(authority("ws:///ws").is_err());
    }
}
