//! Semantic checks serde cannot express: exactly-one-of keys, bounds, topic overlaps between
//! routes. Every problem is reported, not just the first.
//!
//! Must not: read files or the environment, or connect to anything.

use super::kafka::check_owned_keys;
use super::{
    Config, ConfigError, ConfigErrors, ErrorPolicy, Format, LossyPolicy, Output, RouteConfig,
};

impl Config {
    /// Semantic checks serde cannot express. Reports every problem found.
    /// Semantic checks serde cannot express. Reports every problem found.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        let mut err = |path: String, message: &str| {
            errs.push(ConfigError {
                path,
                message: message.to_string(),
            })
        };
        if self.source.bootstrap_servers.trim().is_empty() {
            err("source.bootstrap_servers".into(), "must not be empty");
        }
        check_owned_keys("source.librdkafka", &self.source.librdkafka, &mut err);
        if let Some(t) = &self.target {
            if t.bootstrap_servers.trim().is_empty() {
                err("target.bootstrap_servers".into(), "must not be empty");
            }
            check_owned_keys("target.librdkafka", &t.librdkafka, &mut err);
        }
        if self.group_id.trim().is_empty() {
            err("group_id".into(), "must not be empty");
        }
        let r = &self.registry;
        let sources = usize::from(r.url.is_some())
            + usize::from(!r.urls.is_empty())
            + usize::from(r.static_dir.is_some());
        if sources != 1 {
            err(
                "registry".into(),
                "set exactly one of `url`, `urls` or `static_dir`",
            );
        }
        for (i, url) in r.url.iter().chain(&r.urls).enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                let key = if r.url.is_some() {
                    "registry.url".to_string()
                } else {
                    format!("registry.urls[{i}]")
                };
                err(key, "must start with http:// or https://");
            }
        }
        if let Some(auth) = &r.auth {
            let exactly_one = |env: bool, file: bool| env != file;
            match (&auth.basic, &auth.bearer) {
                (Some(b), None) => {
                    if !exactly_one(b.password_env.is_some(), b.password_file.is_some()) {
                        err(
                            "registry.auth.basic".into(),
                            "set exactly one of `password_env` or `password_file`",
                        );
                    }
                }
                (None, Some(b)) => {
                    if !exactly_one(b.token_env.is_some(), b.token_file.is_some()) {
                        err(
                            "registry.auth.bearer".into(),
                            "set exactly one of `token_env` or `token_file`",
                        );
                    }
                }
                _ => err(
                    "registry.auth".into(),
                    "set exactly one of `basic` or `bearer`",
                ),
            }
        }
        if r.cache_size == 0 {
            err("registry.cache_size".into(), "must be at least 1");
        }
        if r.initial_backoff_ms == 0 || r.initial_backoff_ms > r.max_backoff_ms {
            err(
                "registry.initial_backoff_ms".into(),
                "must be at least 1 and not above registry.max_backoff_ms",
            );
        }
        let p = &self.pipeline;
        for (key, value) in [
            ("pipeline.max_in_flight", p.max_in_flight as u64),
            ("pipeline.max_in_flight_bytes", p.max_in_flight_bytes as u64),
            ("pipeline.transaction_ms", p.transaction_ms),
            (
                "pipeline.transaction_max_records",
                p.transaction_max_records as u64,
            ),
            ("pipeline.commit_interval_ms", p.commit_interval_ms),
        ] {
            if value == 0 {
                err(key.into(), "must be at least 1");
            }
        }
        if p.transactional_id
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            err("pipeline.transactional_id".into(), "must not be empty");
        }
        if self.routes.is_empty() {
            err("routes".into(), "at least one route is required");
        }
        let mut names = std::collections::HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = |k: &str| format!("routes[{i}].{k}");
            if route.name.trim().is_empty() {
                err(at("name"), "must not be empty");
            } else if !names.insert(route.name.as_str()) {
                err(
                    at("name"),
                    &format!("duplicate route name `{}`", route.name),
                );
            }
            let src = &route.source;
            if src.topics.is_empty() == src.topic_regex.is_none() {
                err(at("source"), "set exactly one of `topics` or `topic_regex`");
            }
            if let Some(re) = &src.topic_regex
                && let Err(e) = regex::Regex::new(re)
            {
                err(at("source.topic_regex"), &format!("invalid regex: {e}"));
            }
            if route.target.trim().is_empty() {
                err(at("target"), "must not be empty");
            }
            if src.topics.iter().any(|t| t == &route.target) && self.target.is_none() {
                err(
                    at("target"),
                    "is also a source topic on the same cluster: messages would loop",
                );
            }
            for (part_name, part) in [("key", &route.key), ("value", &route.value)] {
                let at = |k: &str| format!("routes[{i}].{part_name}.{k}");
                match (part.format, &part.reader) {
                    (Format::Passthrough, Some(_)) => err(
                        at("reader"),
                        "not used with `format: passthrough`; remove it",
                    ),
                    (Format::Passthrough, None) => {}
                    (_, None) => err(at("reader"), "required for this format"),
                    (_, Some(reader)) => match (&reader.subject, &reader.schema_file) {
                        (Some(_), Some(_)) => err(
                            at("reader"),
                            "set either `subject` (+ `version`) or `schema_file` (+ `id`), not both",
                        ),
                        (None, None) => err(
                            at("reader.subject"),
                            "required (or `schema_file` with `id`)",
                        ),
                        (Some(s), None) => {
                            if s.trim().is_empty() {
                                err(at("reader.subject"), "must not be empty");
                            }
                            if reader.id.is_some() {
                                err(at("reader.id"), "only used with `schema_file`");
                            }
                        }
                        (None, Some(_)) => {
                            if reader.id.is_none() {
                                err(
                                    at("reader.id"),
                                    "required with `schema_file`: the registry id to frame messages with",
                                );
                            }
                        }
                    },
                }
                if part.format != Format::Protobuf {
                    if part.unknown_fields.is_some() {
                        err(at("unknown_fields"), "only used with `format: protobuf`");
                    }
                    if part.reader.as_ref().is_some_and(|r| r.message.is_some()) {
                        err(at("reader.message"), "only used with `format: protobuf`");
                    }
                }
                if part.format == Format::Passthrough && part.output != Output::Framed {
                    err(
                        at("output"),
                        "`json` needs a schema: not used with `format: passthrough`",
                    );
                }
                let needs_dlq =
                    part.on_error == ErrorPolicy::Dlq || part.on_lossy == LossyPolicy::Dlq;
                if part.format != Format::Passthrough && needs_dlq && part.dlq.is_none() {
                    err(
                        at("dlq"),
                        "required when `on_error` or `on_lossy` is `dlq` (the default for on_error)",
                    );
                }
                if let Some(dlq) = &part.dlq
                    && (dlq == &route.target || src.topics.contains(dlq))
                {
                    err(
                        at("dlq"),
                        "must differ from the route's source and target topics",
                    );
                }
            }
        }
        check_route_overlaps(&self.routes, self.target.is_none(), &mut err);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }
}

/// Cross-route checks. A source topic two routes claim is refused (the first route in order
/// would take every message and the other would silently see none), and so is, when source and
/// target are one cluster, a target or DLQ topic that some route consumes: the gateway would
/// consume its own output (A→B plus B→A multiplies messages without end; a regex matching its
/// own target loops on its own). Regex against regex is only compared as text: whether two
/// patterns can match one name is not decidable here, and the literal/target checks catch the
/// configs seen in practice.
fn check_route_overlaps(
    routes: &[RouteConfig],
    same_cluster: bool,
    err: &mut impl FnMut(String, &str),
) {
    // Whole-name matchers, as the pipeline builds them (invalid ones are reported above).
    let regexes: Vec<Option<regex::Regex>> = routes
        .iter()
        .map(|r| {
            r.source
                .topic_regex
                .as_ref()
                .and_then(|re| regex::Regex::new(&format!("^(?:{re})$")).ok())
        })
        .collect();
    let label = |k: usize| routes.get(k).map_or("", |r| r.name.as_str());
    // The key path of the source entry of route `k` that consumes `topic`, if any.
    let consumer_of = |k: usize, topic: &str| -> Option<String> {
        let route = routes.get(k)?;
        if let Some(j) = route.source.topics.iter().position(|t| t == topic) {
            return Some(format!("routes[{k}].source.topics[{j}]"));
        }
        match regexes.get(k) {
            Some(Some(re)) if re.is_match(topic) => Some(format!("routes[{k}].source.topic_regex")),
            _ => None,
        }
    };
    for (i, route) in routes.iter().enumerate() {
        for (j, topic) in route.source.topics.iter().enumerate() {
            for k in 0..routes.len() {
                if k == i {
                    continue;
                }
                let Some(other) = consumer_of(k, topic) else {
                    continue;
                };
                if k < i {
                    err(
                        format!("routes[{i}].source.topics[{j}]"),
                        &format!(
                            "topic {topic} is already routed by {other} ({}); a topic can have one route only",
                            label(k)
                        ),
                    );
                } else if other.ends_with("topic_regex") {
                    // A later literal route is reported when the loop reaches it.
                    err(
                        format!("routes[{i}].source.topics[{j}]"),
                        &format!(
                            "topic {topic} is also matched by {other} ({}), which would never receive it; a topic can have one route only",
                            label(k)
                        ),
                    );
                }
            }
        }
        if let Some(re) = &route.source.topic_regex
            && let Some(k) = routes
                .iter()
                .take(i)
                .position(|r| r.source.topic_regex.as_ref() == Some(re))
        {
            err(
                format!("routes[{i}].source.topic_regex"),
                &format!(
                    "same pattern as routes[{k}].source.topic_regex ({}); a topic can have one route only",
                    label(k)
                ),
            );
        }
        if !same_cluster {
            continue;
        }
        let mut outputs = vec![("target".to_string(), &route.target)];
        for (part_name, part) in [("key", &route.key), ("value", &route.value)] {
            if let Some(dlq) = &part.dlq {
                outputs.push((format!("{part_name}.dlq"), dlq));
            }
        }
        for (key, topic) in outputs {
            for k in 0..routes.len() {
                // A route's own literal source as its target or DLQ is reported above.
                if k == i
                    && routes
                        .get(k)
                        .is_some_and(|r| r.source.topics.contains(topic))
                {
                    continue;
                }
                if let Some(other) = consumer_of(k, topic) {
                    err(
                        format!("routes[{i}].{key}"),
                        &format!(
                            "topic {topic} is consumed by {other} ({}) on the same cluster: the gateway would consume its own output and messages would loop",
                            label(k)
                        ),
                    );
                }
            }
        }
    }
}
