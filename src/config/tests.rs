use super::*;

const GOOD: &str = r#"
source:
  bootstrap_servers: localhost:9092
group_id: bridge
registry:
  url: http://localhost:8081
routes:
  - name: orders
    source: { topics: [orders] }
    target: orders-v1
    value:
      format: avro
      reader: { subject: orders-value, version: 1 }
      dlq: orders-dlq
"#;

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn good_config_parses_with_defaults() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.routes[0].value.format, Some(Format::Avro));
    assert_eq!(
        c.routes[0].key.format, None,
        "a key without a format is passthrough"
    );
    assert_eq!(c.routes[0].value.on_error, ErrorPolicy::Dlq);
    assert_eq!(
        c.routes[0].value.reader.as_ref().unwrap().source,
        ReaderSource::Registry {
            subject: "orders-value".into(),
            version: SubjectVersion::Number(1)
        }
    );
    assert_eq!(c.registry.timeout_ms, 10_000);
    assert_eq!(c.target_cluster().bootstrap_servers, "localhost:9092");
    let cc = c.consumer_config();
    assert_eq!(cc.get("enable.auto.offset.store"), Some("false"));
    assert_eq!(c.producer_config().get("enable.idempotence"), Some("true"));
}

#[test]
fn delivery_settings_drive_the_client_configs_and_zero_bounds_are_refused() {
    let eos = GOOD.replace(
        "routes:",
        "pipeline:\n  delivery: exactly_once\n  transactional_id: bridge-0\nroutes:",
    );
    let c = Config::parse(&eos).unwrap();
    assert_eq!(
        c.producer_config().get("transactional.id"),
        Some("bridge-0")
    );
    assert_eq!(
        c.consumer_config().get("isolation.level"),
        Some("read_committed")
    );
    assert_eq!(c.consumer_config().get("enable.auto.commit"), Some("false"));
    let alo = Config::parse(GOOD).unwrap();
    assert_eq!(alo.producer_config().get("transactional.id"), None);

    let zeros = GOOD.replace(
        "routes:",
        "pipeline:\n  max_in_flight_bytes: 0\n  transaction_ms: 0\n  transactional_id: \" \"\nroutes:",
    );
    let errs = errors(&zeros);
    assert_eq!(
        errs,
        [
            "pipeline.max_in_flight_bytes: must be at least 1",
            "pipeline.transaction_ms: must be at least 1",
            "pipeline.transactional_id: must not be empty",
        ]
    );
    let owned = GOOD.replace(
        "  bootstrap_servers: localhost:9092\n",
        "  bootstrap_servers: localhost:9092\n  librdkafka: { isolation.level: read_uncommitted }\n",
    );
    assert!(
        errors(&owned)[0].starts_with("source.librdkafka"),
        "{:?}",
        errors(&owned)
    );
}

#[test]
fn typo_key_names_its_path() {
    let text = GOOD.replace("reader: { subject:", "reader: { subjet:");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("routes[0].value.reader: unknown field `subjet`"),
        "{errs:?}"
    );
}

#[test]
fn missing_required_key_names_it() {
    let text = GOOD.replace("group_id: bridge\n", "");
    let errs = errors(&text);
    assert!(errs[0].contains("missing field `group_id`"), "{errs:?}");
    let text = GOOD.replace("    target: orders-v1\n", "");
    let errs = errors(&text);
    assert!(
        errs[0].starts_with("routes[0]: set exactly one of `target`"),
        "{errs:?}"
    );
}

#[test]
fn bad_values_name_their_keys() {
    let text = GOOD.replace("version: 1", "version: newest");
    assert!(errors(&text)[0].starts_with("routes[0].value.reader.version: invalid value"));
    let text = GOOD.replace("format: avro", "format: thrift");
    assert!(errors(&text)[0].starts_with("routes[0].value.format: unknown variant `thrift`"));
    let text = GOOD.replace("      dlq: orders-dlq\n", "");
    assert_eq!(
        errors(&text),
        vec![
            "routes[0].value.dlq: required when `on_error` or `on_lossy` is `dlq` (the default for on_error)"
        ]
    );
}

#[test]
fn semantic_errors_are_all_reported() {
    let text = GOOD
        .replace("url: http://localhost:8081", "url: localhost:8081")
        .replace("target: orders-v1", "target: orders")
        .replace(
            "source:\n  bootstrap_servers: localhost:9092",
            "source:\n  bootstrap_servers: localhost:9092\n  librdkafka: { enable.auto.offset.store: 'true' }",
        );
    let errs = errors(&text);
    assert_eq!(
        errs,
        vec![
            "source.librdkafka.enable.auto.offset.store: is set by schemabridge (its delivery guarantees depend on it); remove it",
            "registry.url: must start with http:// or https://",
            "routes[0].target: is also a source topic on the same cluster: messages would loop",
        ]
    );
}

#[test]
fn protobuf_only_keys_are_refused_elsewhere() {
    let text = GOOD.replace(
        "      dlq: orders-dlq\n",
        "      dlq: orders-dlq\n      unknown_fields: drop\n",
    );
    assert_eq!(
        errors(&text),
        vec!["routes[0].value.unknown_fields: only used with `format: protobuf`"]
    );
    let text = text.replace("format: avro", "format: protobuf");
    let c = Config::parse(&text).unwrap();
    assert_eq!(
        c.routes[0].value.unknown_fields,
        Some(crate::protobuf::UnknownFields::Drop)
    );
    assert_eq!(
        c.producer_config().get("allow.auto.create.topics"),
        Some("false")
    );
}

#[test]
fn schema_file_reader_needs_an_id() {
    let text = GOOD.replace(
        "reader: { subject: orders-value, version: 1 }",
        "reader: { schema_file: v1.avsc }",
    );
    assert_eq!(
        errors(&text),
        vec![
            "routes[0].value.reader.id: required with `schema_file`: the registry id to frame messages with"
        ]
    );
}

/// `GOOD` plus a second route (`extra`, one YAML list item).
fn with_route(extra: &str) -> String {
    format!("{GOOD}{extra}")
}

#[test]
fn a_second_route_on_an_already_routed_topic_is_refused_naming_both() {
    let text = with_route(
        "  - name: orders-again\n    source: { topics: [payments, orders] }\n    target: orders-v2\n    value: { format: passthrough }\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            "routes[1].source.topics[1]: topic orders is already routed by routes[0].source.topics[0] (orders); a topic can have one route only"
        ]
    );
}

#[test]
fn a_literal_topic_matched_by_another_routes_regex_is_refused_either_way_round() {
    let later_regex = with_route(
        "  - name: all-orders\n    source: { topic_regex: \"orders|payments\" }\n    target: archive\n    value: { format: passthrough }\n",
    );
    assert_eq!(
        errors(&later_regex),
        vec![
            "routes[0].source.topics[0]: topic orders is also matched by routes[1].source.topic_regex (all-orders), which would never receive it; a topic can have one route only"
        ]
    );
    let earlier_regex = GOOD
        .replace(
            "source: { topics: [orders] }",
            "source: { topic_regex: \"orders|payments\" }",
        )
        .replace("target: orders-v1", "target: archive")
        + "  - name: orders-literal\n    source: { topics: [orders] }\n    target: out\n    value: { format: passthrough }\n";
    assert_eq!(
        errors(&earlier_regex),
        vec![
            "routes[1].source.topics[0]: topic orders is already routed by routes[0].source.topic_regex (orders); a topic can have one route only"
        ]
    );
    let same_pattern =
        earlier_regex.replace("topics: [orders] }", "topic_regex: \"orders|payments\" }");
    assert_eq!(
        errors(&same_pattern),
        vec![
            "routes[1].source.topic_regex: same pattern as routes[0].source.topic_regex (orders); a topic can have one route only"
        ]
    );
}

#[test]
fn routes_feeding_each_other_on_one_cluster_are_a_loop() {
    let text = with_route(
        "  - name: back\n    source: { topics: [orders-v1] }\n    target: orders\n    value: { format: passthrough }\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            "routes[0].target: topic orders-v1 is consumed by routes[1].source.topics[0] (back) on the same cluster: the gateway would consume its own output and messages would loop",
            "routes[1].target: topic orders is consumed by routes[0].source.topics[0] (orders) on the same cluster: the gateway would consume its own output and messages would loop",
        ]
    );
    // Bridge mode: the targets are on another cluster, nothing loops.
    let bridged = text.replace(
        "group_id: bridge",
        "target: { bootstrap_servers: other:9092 }\ngroup_id: bridge",
    );
    Config::parse(&bridged).unwrap();
}

#[test]
fn a_target_or_dlq_matched_by_a_source_regex_is_a_loop() {
    let own = GOOD.replace(
        "source: { topics: [orders] }",
        "source: { topic_regex: \"orders.*\" }",
    );
    assert_eq!(
        errors(&own),
        vec![
            "routes[0].target: topic orders-v1 is consumed by routes[0].source.topic_regex (orders) on the same cluster: the gateway would consume its own output and messages would loop",
            "routes[0].value.dlq: topic orders-dlq is consumed by routes[0].source.topic_regex (orders) on the same cluster: the gateway would consume its own output and messages would loop",
        ]
    );
    let other = with_route(
        "  - name: v1-mirror\n    source: { topic_regex: \".*-v1\" }\n    target: mirror\n    value: { format: passthrough }\n",
    );
    assert_eq!(
        errors(&other),
        vec![
            "routes[0].target: topic orders-v1 is consumed by routes[1].source.topic_regex (v1-mirror) on the same cluster: the gateway would consume its own output and messages would loop"
        ]
    );
    let bridged = own.replace(
        "group_id: bridge",
        "target: { bootstrap_servers: other:9092 }\ngroup_id: bridge",
    );
    Config::parse(&bridged).unwrap();
}

#[test]
fn metadata_readers_and_reader_refresh() {
    let text = GOOD.replace(
        "reader: { subject: orders-value, version: 1 }",
        "reader: { subject: orders-value, metadata: { major: 1, team: payments } }",
    );
    let c = Config::parse(&text).unwrap();
    let source = &c.routes[0].value.reader.as_ref().unwrap().source;
    assert_eq!(
        source,
        &ReaderSource::Metadata {
            subject: "orders-value".into(),
            metadata: [("major", "1"), ("team", "payments")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }
    );
    assert!(source.can_change());
    assert_eq!(c.registry.reader_refresh_ms, 300_000);
    assert!(
        c.summary()
            .iter()
            .any(|l| l.contains("reader_refresh_ms=300000"))
    );
    assert!(
        c.summary()
            .iter()
            .any(|l| l.contains("latest with metadata major=1,team=payments"))
    );

    let both = GOOD.replace(
        "reader: { subject: orders-value, version: 1 }",
        "reader: { subject: orders-value, version: 1, metadata: { major: \"1\" } }",
    );
    assert_eq!(
        errors(&both),
        ["routes[0].value.reader: set either `version` or `metadata`, not both"]
    );
    let empty = GOOD.replace(
        "reader: { subject: orders-value, version: 1 }",
        "reader: { subject: orders-value, metadata: {} }",
    );
    assert!(
        errors(&empty)[0].starts_with("routes[0].value.reader.metadata: name at least one key")
    );
    let typo = GOOD.replace(
        "url: http://localhost:8081",
        "url: http://localhost:8081\n  reader_refresh: 5",
    );
    assert!(
        errors(&typo)[0].starts_with("registry: unknown field `reader_refresh`"),
        "{:?}",
        errors(&typo)
    );
    for (value, message) in [
        ("0", "must be at least 1"),
        ("3600001", "must be at most 3600000"),
    ] {
        let bad = GOOD.replace(
            "url: http://localhost:8081",
            &format!("url: http://localhost:8081\n  reader_refresh_ms: {value}"),
        );
        assert_eq!(
            errors(&bad),
            [format!("registry.reader_refresh_ms: {message}")]
        );
    }
    let static_dir = GOOD
        .replace("url: http://localhost:8081", "static_dir: schemas")
        .replace(
            "reader: { subject: orders-value, version: 1 }",
            "reader: { subject: orders-value, metadata: { major: \"1\" } }",
        );
    assert!(
        errors(&static_dir)[0]
            .starts_with("routes[0].value.reader.metadata: needs a registry with `url`/`urls`")
    );
}

#[test]
fn target_registry_keys_are_checked_and_named() {
    let bridge = GOOD.replace(
        "routes:",
        "target_registry:\n  urls: [http://target-a:8081, http://target-b:8081]\n  register: true\nroutes:",
    );
    let c = Config::parse(&bridge).unwrap();
    let t = c.target_registry.as_ref().unwrap();
    assert!(t.register);
    assert_eq!(t.registry.key, "target_registry");
    assert_eq!(
        t.registry.source,
        RegistrySource::Urls(vec![
            "http://target-a:8081".into(),
            "http://target-b:8081".into()
        ])
    );
    assert!(c.summary().iter().any(|l| l
        == "target_registry: http://target-a:8081, http://target-b:8081 timeout_ms=10000 register=true"));
    assert!(Config::parse(GOOD).unwrap().target_registry.is_none());

    // A file reader looked up by subject in the target registry; only in bridge mode.
    let file_reader = "reader: { schema_file: order_v1.avsc, subject: orders.v1-value }";
    let with_file = bridge.replace("reader: { subject: orders-value, version: 1 }", file_reader);
    assert!(matches!(
        Config::parse(&with_file).unwrap().routes[0]
            .value
            .reader
            .as_ref()
            .unwrap()
            .source,
        ReaderSource::FileBySubject { .. }
    ));
    let not_bridge = GOOD.replace("reader: { subject: orders-value, version: 1 }", file_reader);
    assert!(errors(&not_bridge)[0].starts_with("routes[0].value.reader: set either `subject`"));

    let bad = GOOD.replace(
        "routes:",
        "target_registry:\n  urls: [ftp://target]\n  auth: { basic: { username: u } }\n  timeout_ms: 0\n  tls: { cert_file: c.pem }\n  regster: true\nroutes:",
    );
    assert_eq!(
        errors(&bad),
        [
            "target_registry: unknown field `regster`, expected one of `url`, `urls`, `static_dir`, `auth`, `tls`, `timeout_ms`, `register`"
        ]
    );
    let bad = bad.replace("\n  regster: true", "");
    let errs = errors(&bad);
    for key in [
        "target_registry.urls[0]: must start with http:// or https://",
        "target_registry.auth.basic: set exactly one of",
        "target_registry.timeout_ms: must be at least 1",
        "target_registry.tls.key_file: required with `cert_file`",
    ] {
        assert!(errs.iter().any(|e| e.starts_with(key)), "{key} in {errs:?}");
    }
    let neither = GOOD.replace("routes:", "target_registry: { register: false }\nroutes:");
    assert_eq!(
        errors(&neither),
        ["target_registry: set exactly one of `url`, `urls` or `static_dir`"]
    );
    let static_register = GOOD.replace(
        "routes:",
        "target_registry: { static_dir: target, register: true }\nroutes:",
    );
    assert!(
        errors(&static_register)[0]
            .starts_with("target_registry.register: a `static_dir` cannot register")
    );
}

const ARCHIVE: &str = r#"
source:
  bootstrap_servers: localhost:9092
group_id: bridge
registry:
  url: http://localhost:8081
routes:
  - name: lake
    source: { topics: [orders] }
    archive:
      url: s3://lake/exports/v1/
      roll: { records: 500 }
      s3:
        endpoint: http://localhost:5000
        allow_http: true
        access_key_id_env: KEY_ID
        secret_access_key_file: /run/secrets/s3
    value:
      format: avro
      reader: { subject: orders-value, version: 1 }
      dlq: orders-dlq
"#;

#[test]
fn an_archive_route_parses_into_its_store_with_defaults() {
    let c = Config::parse(ARCHIVE).unwrap();
    let a = c.routes[0].archive.as_ref().expect("archive");
    assert_eq!(c.routes[0].target, "");
    assert_eq!(a.format, ArchiveFormat::Avro);
    assert_eq!(a.codec, ArchiveCodec::Deflate);
    // An unquoted `codec: null` (YAML's null) is the codec named null, as is a quoted one.
    for line in ["codec: null", "codec: \"null\"", "codec: deflate"] {
        let with = ARCHIVE.replace(
            "      roll: { records: 500 }\n",
            &format!("      roll: {{ records: 500 }}\n      {line}\n"),
        );
        let c = Config::parse(&with).unwrap_or_else(|e| panic!("{line}: {e}"));
        let want = if line.ends_with("deflate") {
            ArchiveCodec::Deflate
        } else {
            ArchiveCodec::Null
        };
        assert_eq!(
            c.routes[0].archive.as_ref().expect("archive").codec,
            want,
            "{line}"
        );
    }
    assert_eq!(a.roll.records, 500);
    assert!(a.roll.bytes > 0 && a.roll.interval_ms > 0, "defaults");
    match &a.store {
        ArchiveStore::S3 {
            bucket,
            prefix,
            endpoint,
            credentials,
            ..
        } => {
            assert_eq!((bucket.as_str(), prefix.as_str()), ("lake", "exports/v1"));
            assert_eq!(endpoint.as_deref(), Some("http://localhost:5000"));
            let (id, secret) = credentials.as_ref().expect("credentials");
            assert_eq!(id, &SecretRef::Env("KEY_ID".into()));
            assert_eq!(secret, &SecretRef::File("/run/secrets/s3".into()));
        }
        other => panic!("{other:?}"),
    }
    let summary = c.summary().join("\n");
    assert!(
        summary.contains("archive s3://lake/exports/v1"),
        "{summary}"
    );
    let local = ARCHIVE.replace("s3://lake/exports/v1/", "file:///data/lake").replace(
        "      s3:\n        endpoint: http://localhost:5000\n        allow_http: true\n        access_key_id_env: KEY_ID\n        secret_access_key_file: /run/secrets/s3\n",
        "",
    );
    let c = Config::parse(&local).unwrap();
    assert_eq!(
        c.routes[0].archive.as_ref().unwrap().store,
        ArchiveStore::Local {
            dir: "/data/lake".into()
        }
    );
}

#[test]
fn archive_mistakes_are_named_by_their_key() {
    let both = ARCHIVE.replace("    archive:\n", "    target: orders-v1\n    archive:\n");
    assert_eq!(
        errors(&both),
        [
            "routes[0]: set exactly one of `target` (a topic, for `run`) or `archive` (files, for `archive`)"
        ]
    );
    let scheme = ARCHIVE.replace("s3://lake/exports/v1/", "ftp://lake/x");
    assert!(errors(&scheme)[0].starts_with("routes[0].archive.url: scheme `ftp`"));
    let half = ARCHIVE.replace("        secret_access_key_file: /run/secrets/s3\n", "");
    assert!(errors(&half)[0].starts_with("routes[0].archive.s3: set the access key id"));
    let http = ARCHIVE.replace("        allow_http: true\n", "");
    assert_eq!(
        errors(&http),
        ["routes[0].archive.s3.endpoint: is plain http: set `allow_http: true` to use it"]
    );
    let zero = ARCHIVE.replace("records: 500", "records: 0");
    assert_eq!(
        errors(&zero),
        ["routes[0].archive.roll.records: must be at least 1"]
    );
    let remote = ARCHIVE.replace("s3://lake/exports/v1/", "file://nas/data");
    let e = errors(&remote);
    assert!(
        e.iter()
            .any(|e| e.starts_with("routes[0].archive.url: a `file://` url names an absolute")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e == "routes[0].archive.s3: only used with an `s3://` url"),
        "{e:?}"
    );
    // Each format's own option, and not the other's.
    let avro_compression = ARCHIVE.replace("      roll:", "      compression: snappy\n      roll:");
    assert_eq!(
        errors(&avro_compression),
        [
            "routes[0].archive.compression: only used with `format: parquet` (Avro files take `codec`)"
        ]
    );
    let parquet = ARCHIVE.replace(
        "      roll:",
        "      format: parquet\n      compression: snappy\n      row_group_bytes: 1048576\n      roll:",
    );
    let c = Config::parse(&parquet).unwrap();
    let a = c.routes[0].archive.as_ref().expect("archive");
    assert_eq!(
        (a.format, a.compression, a.row_group_bytes),
        (ArchiveFormat::Parquet, ArchiveCompression::Snappy, 1 << 20)
    );
    // The Parquet defaults: text columns dictionary-encoded unless mostly distinct, page
    // statistics.
    assert_eq!(
        (a.dictionary, a.statistics),
        (ArchiveDictionary::Auto, ArchiveStatistics::Page)
    );
    let summary = c.summary().join("\n");
    assert!(
        summary.contains(
            "format parquet compression snappy dictionary auto statistics page row_group_bytes \
             1048576 encoding_threads 2"
        ),
        "{summary}"
    );
    let tuned = parquet.replace(
        "      compression: snappy\n",
        "      compression: snappy\n      dictionary: none\n      statistics: row_group\n",
    );
    let c = Config::parse(&tuned).unwrap();
    let a = c.routes[0].archive.as_ref().expect("archive");
    assert_eq!(
        (a.dictionary, a.statistics),
        (ArchiveDictionary::None, ArchiveStatistics::RowGroup)
    );
    let summary = c.summary().join("\n");
    assert!(
        summary.contains("dictionary none statistics row_group row_group_bytes"),
        "{summary}"
    );
    let avro_parquet_options = ARCHIVE.replace(
        "      roll:",
        "      dictionary: all\n      statistics: none\n      compression_level: 3\n      \
         encoding_threads: 1\n      roll:",
    );
    assert_eq!(
        errors(&avro_parquet_options),
        [
            "routes[0].archive.dictionary: only used with `format: parquet`",
            "routes[0].archive.statistics: only used with `format: parquet`",
            "routes[0].archive.compression_level: only used with `format: parquet`",
            "routes[0].archive.encoding_threads: only used with `format: parquet`"
        ]
    );
    // Encoding threads per open file: 2 unless given, 0 to 2.
    assert_eq!(a.encoding_threads, 2);
    let threads = |n: &str| {
        parquet.replace(
            "      compression: snappy\n",
            &format!("      compression: snappy\n      encoding_threads: {n}\n"),
        )
    };
    let c = Config::parse(&threads("0")).unwrap();
    let a0 = c.routes[0].archive.as_ref().expect("archive");
    assert_eq!(a0.encoding_threads, 0);
    assert!(c.summary().join("\n").contains("encoding_threads 0"));
    assert_eq!(
        errors(&threads("3")),
        ["routes[0].archive.encoding_threads: 3 is not 0, 1 or 2 (threads per open file)"]
    );
    // zstd's level: the writer's default unless given, 1 to 22, and only with zstd.
    assert_eq!(a.compression_level, None);
    let zstd = |level: &str| {
        parquet.replace(
            "      compression: snappy\n",
            &format!("      compression: zstd\n      compression_level: {level}\n"),
        )
    };
    let c = Config::parse(&zstd("3")).unwrap();
    let a = c.routes[0].archive.as_ref().expect("archive");
    assert_eq!(
        (a.compression, a.compression_level),
        (ArchiveCompression::Zstd, Some(3))
    );
    let summary = c.summary().join("\n");
    assert!(
        summary.contains("format parquet compression zstd level 3 dictionary auto"),
        "{summary}"
    );
    for level in ["0", "23", "-1"] {
        assert_eq!(
            errors(&zstd(level)),
            [format!(
                "routes[0].archive.compression_level: {level} is not a zstd level: 1 to 22"
            )]
        );
    }
    let snappy_level = parquet.replace(
        "      compression: snappy\n",
        "      compression: snappy\n      compression_level: 3\n",
    );
    assert_eq!(
        errors(&snappy_level),
        ["routes[0].archive.compression_level: only used with `compression: zstd`"]
    );
    let default_zstd_level = parquet.replace(
        "      compression: snappy\n",
        "      compression_level: 9\n",
    );
    let c = Config::parse(&default_zstd_level).unwrap();
    let a = c.routes[0].archive.as_ref().expect("archive");
    assert_eq!(
        (a.compression, a.compression_level),
        (ArchiveCompression::Zstd, Some(9))
    );
    let misspelt = parquet.replace(
        "      compression: snappy\n",
        "      statistics: rowgroup\n",
    );
    assert!(
        errors(&misspelt)
            .iter()
            .any(|e| e.starts_with("routes[0].archive.statistics: unknown variant `rowgroup`")),
        "{:?}",
        errors(&misspelt)
    );
    // Either codec, the default one too: a parquet route with a `codec` is a mistake.
    for codec in ["null", "deflate"] {
        let parquet_codec = parquet.replace(
            "      compression: snappy\n",
            &format!("      codec: {codec}\n"),
        );
        assert_eq!(
            errors(&parquet_codec),
            ["routes[0].archive.codec: only used with `format: avro`"],
            "codec: {codec}"
        );
    }
    let passthrough = ARCHIVE.replace(
        "      format: avro\n      reader: { subject: orders-value, version: 1 }\n",
        "      format: passthrough\n",
    );
    assert!(
        errors(&passthrough)
            .iter()
            .any(|e| e.starts_with("routes[0].value.format: an archive route needs a schema"))
    );
}
