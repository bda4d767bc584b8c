//! Property tests: the parser, the validator, the expression language and
//! URI templates on generated documents and on mutations of the real
//! artifacts of `config/compat/`. Whatever the input, they answer (a value
//! or an error), never panic or overflow the stack, and refuse what is over
//! a cap with the cap's name.
//!
//! Each property runs `DEFAULT_CASES` cases (a few thousand in all, well
//! under a minute in a debug build); `PROPTEST_CASES=100000 cargo test -p
//! artisync-synapse --release properties` runs a long one (BENCHMARKS.md).

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::expression::{parse_condition, parse_expression};
use super::template::{parse_uri_template, parse_url_mapping};
use super::*;

const PIZZASHACK: &str = include_str!("../../../config/compat/wso2-apim-PizzaShackAPI_v1.0.0.xml");
const SAMPLE_800: &str = include_str!("../../../config/compat/apache-synapse-sample-800.xml");

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 400;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Markup fragments that make mutations interesting: tags of the subset,
/// broken syntax, entities, placeholders, expressions.
const FRAGMENTS: &[&str] = &[
    "<",
    ">",
    "/>",
    "</",
    "\"",
    "'",
    "=",
    "&amp;",
    "&lt;",
    "&#x10FFFF;",
    "&#0;",
    "&bogus;",
    "<![CDATA[x]]>",
    "<!-- c -->",
    "<?pi x?>",
    "<!DOCTYPE api>",
    "xmlns=\"http://ws.apache.org/ns/synapse\"",
    "xmlns:s=\"http://ws.apache.org/ns/synapse\"",
    "<s:log/>",
    "<sequence key=\"s\"/>",
    "<sequence name=\"s\"><sequence key=\"s\"/></sequence>",
    "<filter source=\"$ctx:a\" regex=\"(a+)+$\"><then><drop/></then><else><respond/></else></filter>",
    "<filter xpath=\"not(get-property('x') = 'y') and $trp:H\"><then/></filter>",
    "<property name=\"HTTP_SC\" value=\"500\" scope=\"axis2\"/>",
    "<property name=\"p\" expression=\"json-eval($.a.b[0])\"/>",
    "<header name=\"H\" expression=\"$url:q\"/>",
    "<payloadFactory media-type=\"json\"><format>{\"a\":\"$1\"}</format><args><arg expression=\"$ctx:x\"/></args></payloadFactory>",
    "<send><endpoint><http uri-template=\"http://h/{uri.var.id}\"/></endpoint></send>",
    "<send><endpoint><http uri-template=\"http://{uri.var.host}/\"/></endpoint></send>",
    "<call><endpoint key=\"e\"/></call>",
    "<endpoint name=\"e\"><address uri=\"https://h:8443/x\"/></endpoint>",
    "<resource methods=\"GET POST\" uri-template=\"/items/{id}?q={q}\">",
    "<resource url-mapping=\"/files/*\">",
    "</resource>",
    "<inSequence>",
    "</inSequence>",
    "<class name=\"org.X\"/>",
    "<localEntry key=\"l\">x</localEntry>",
    "{uri.var.x}",
    "\u{feff}",
    "é",
    "\u{0}",
    "\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, fragment: usize },
    Duplicate { at: usize, len: usize },
    Replace { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..FRAGMENTS.len())
            .prop_map(|(at, fragment)| Mutation::Insert { at, fragment }),
        (any::<usize>(), 0usize..256).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
    ]
}

fn mutate(source: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = source.as_bytes().to_vec();
    for mutation in mutations {
        let len = bytes.len().max(1);
        match *mutation {
            Mutation::Delete { at, len: n } => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Insert { at, fragment } => {
                let at = (at % len).min(bytes.len());
                let fragment = FRAGMENTS[fragment].as_bytes();
                bytes.splice(at..at, fragment.iter().copied());
            }
            Mutation::Duplicate { at, len: n } => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(end..end, copy);
                }
            }
            Mutation::Replace { at, byte } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
        }
    }
    bytes
}

/// What every answer of the parser must look like.
fn check_answer(result: &Result<Artifact, ArtifactError>) -> Result<(), TestCaseError> {
    match result {
        Ok(artifact) => {
            prop_assert!(!artifact.api.name.is_empty());
            prop_assert!(artifact.sequences.len() <= LIMITS.max_sequences);
            prop_assert!(artifact.endpoints.len() <= LIMITS.max_endpoints);
        }
        Err(error) => {
            let (line, column) = match error {
                ArtifactError::Malformed { line, column, .. }
                | ArtifactError::Unsupported { line, column, .. }
                | ArtifactError::Invalid { line, column, .. }
                | ArtifactError::OverLimit { line, column, .. } => (*line, *column),
            };
            prop_assert!(line >= 1 && column >= 1, "{error}");
            prop_assert!(matches!(error.http_status(), 400 | 422));
            prop_assert!(!error.to_string().is_empty());
        }
    }
    Ok(())
}

fn pizzashack_bundle() -> String {
    let api = PIZZASHACK
        .split_once("?>")
        .map_or(PIZZASHACK, |(_, rest)| rest);
    format!(
        r#"<definitions xmlns="http://ws.apache.org/ns/synapse">{api}<endpoint name="PizzaShackAPI--v1.0.0_APIproductionEndpoint"><http uri-template="http://127.0.0.1:8081/prod"/></endpoint><endpoint name="PizzaShackAPI--v1.0.0_APIsandboxEndpoint"><http uri-template="http://127.0.0.1:8081/sandbox"/></endpoint></definitions>"#
    )
}

/// A generated element tree from the subset's vocabulary: nesting,
/// attributes and references in any combination.
fn element(depth: u32) -> impl Strategy<Value = String> {
    const NAMES: &[&str] = &[
        "sequence",
        "filter",
        "then",
        "else",
        "log",
        "property",
        "send",
        "call",
        "endpoint",
        "http",
        "address",
        "respond",
        "drop",
        "payloadFactory",
        "format",
        "args",
        "arg",
        "class",
        "header",
        "inSequence",
        "outSequence",
        "faultSequence",
        "resource",
    ];
    const ATTRIBUTES: &[(&str, &str)] = &[
        ("key", "s"),
        ("name", "s"),
        ("source", "$ctx:a"),
        ("regex", "a.*"),
        ("xpath", "$ctx:a = 'b'"),
        ("expression", "get-property('uri.var.id')"),
        ("value", "1"),
        ("scope", "axis2"),
        ("uri-template", "http://h/{uri.var.id}"),
        ("uri", "http://{uri.var.h}:1/"),
        ("media-type", "json"),
        ("level", "full"),
        ("methods", "GET"),
    ];
    let leaf = (
        0..NAMES.len(),
        prop::collection::vec(0..ATTRIBUTES.len(), 0..4),
    )
        .prop_map(|(name, attributes)| {
            let attributes: String = attributes
                .iter()
                .map(|&i| format!(" {}=\"{}\"", ATTRIBUTES[i].0, ATTRIBUTES[i].1))
                .collect();
            format!("<{}{attributes}/>", NAMES[name])
        });
    leaf.prop_recursive(depth, 64, 6, move |inner| {
        (
            0..NAMES.len(),
            prop::collection::vec(0..ATTRIBUTES.len(), 0..3),
            prop::collection::vec(inner, 0..6),
        )
            .prop_map(|(name, attributes, children)| {
                let attributes: String = attributes
                    .iter()
                    .map(|&i| format!(" {}=\"{}\"", ATTRIBUTES[i].0, ATTRIBUTES[i].1))
                    .collect();
                let name = NAMES[name];
                format!("<{name}{attributes}>{}</{name}>", children.concat())
            })
    })
}

/// Documents shaped like attacks: each over one cap by a generated amount.
#[derive(Debug, Clone)]
enum Hostile {
    Deep(usize),
    Wide(usize),
    Many(usize),
    Chain(usize),
    Nested(usize),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        (LIMITS.max_xml_depth + 1..LIMITS.max_xml_depth * 20).prop_map(Hostile::Deep),
        (LIMITS.max_attributes_per_element + 1..LIMITS.max_attributes_per_element * 40)
            .prop_map(Hostile::Wide),
        (LIMITS.max_elements + 1..LIMITS.max_elements * 3).prop_map(Hostile::Many),
        (LIMITS.max_sequences + 1..LIMITS.max_sequences * 4).prop_map(Hostile::Chain),
        (LIMITS.max_mediation_depth..LIMITS.max_mediation_depth * 5).prop_map(Hostile::Nested),
    ]
}

fn hostile_document(shape: &Hostile) -> (String, &'static str) {
    let in_sequence = |mediators: &str| {
        format!(
            r#"<api name="A" context="/a"><resource><inSequence>{mediators}</inSequence></resource></api>"#
        )
    };
    match *shape {
        Hostile::Deep(n) => (
            format!("{}{}", "<a>".repeat(n), "</a>".repeat(n)),
            "max_xml_depth",
        ),
        Hostile::Wide(n) => {
            let attributes: String = (0..n).map(|i| format!(" a{i}='x'")).collect();
            (
                in_sequence(&format!(
                    "<payloadFactory><format><x{attributes}/></format></payloadFactory><respond/>"
                )),
                "max_attributes_per_element",
            )
        }
        Hostile::Many(n) => (
            in_sequence(&format!(
                "<payloadFactory><format>{}</format></payloadFactory><respond/>",
                "<x/>".repeat(n)
            )),
            "max_elements",
        ),
        Hostile::Chain(n) => {
            let sequences: String = (0..n)
                .map(|i| {
                    format!(
                        r#"<sequence name="s{i}"><sequence key="s{}"/></sequence>"#,
                        i + 1
                    )
                })
                .collect();
            (
                format!(
                    r#"<definitions>{sequences}{}</definitions>"#,
                    in_sequence(r#"<sequence key="s0"/>"#)
                ),
                "max_sequences",
            )
        }
        Hostile::Nested(n) => {
            let open = r#"<filter source="$ctx:x" regex="y"><then>"#.repeat(n);
            let close = "</then></filter>".repeat(n);
            (
                in_sequence(&format!("{open}<drop/>{close}")),
                "max_mediation_depth",
            )
        }
    }
}

/// Strings near the expression language: its keywords and punctuation.
fn expression_text() -> impl Strategy<Value = String> {
    const PARTS: &[&str] = &[
        "get-property",
        "json-eval",
        "$ctx:",
        "$trp:",
        "$url:",
        "(",
        ")",
        "'",
        "\"",
        ",",
        "uri.var.",
        "query.param.",
        "SYSTEM_TIME",
        "default",
        "axis2",
        "transport",
        "$.",
        "a",
        "b",
        "[0]",
        "[",
        "]",
        ".",
        " = ",
        " != ",
        " and ",
        " or ",
        "not(",
        " ",
        "é",
    ];
    prop::collection::vec(0..PARTS.len(), 0..40)
        .prop_map(|parts| parts.iter().map(|&i| PARTS[i]).collect())
}

fn template_text() -> impl Strategy<Value = String> {
    const PARTS: &[&str] = &[
        "/", "{", "}", "+", "*", "?", "&", "=", "a", "id", "x.y", "-", "_", "é", "%20", "{id}",
        "{+rest}", ".", " ",
    ];
    prop::collection::vec(0..PARTS.len(), 0..30)
        .prop_map(|parts| parts.iter().map(|&i| PARTS[i]).collect())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_real_artifacts_get_an_answer(
        which in 0usize..3,
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let base = match which {
            0 => PIZZASHACK.to_string(),
            1 => SAMPLE_800.to_string(),
            _ => pizzashack_bundle(),
        };
        let document = mutate(&base, &mutations);
        check_answer(&parse_artifact(&document))?;
    }

    #[test]
    fn arbitrary_bytes_get_an_answer(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_answer(&parse_artifact(&bytes))?;
    }

    #[test]
    fn generated_documents_get_an_answer(
        body in prop::collection::vec(element(6), 0..6),
        bundle in any::<bool>(),
        extra in prop::collection::vec(element(4), 0..4),
    ) {
        let api = format!(
            r#"<api name="G" context="/g"><resource><inSequence>{}</inSequence></resource></api>"#,
            body.concat()
        );
        let document = if bundle {
            format!(r#"<definitions xmlns="http://ws.apache.org/ns/synapse">{api}{}</definitions>"#, extra.concat())
        } else {
            api
        };
        check_answer(&parse_artifact(document.as_bytes()))?;
    }

    #[test]
    fn documents_over_a_cap_are_refused_naming_it(shape in hostile()) {
        let (document, cap) = hostile_document(&shape);
        match parse_artifact(document.as_bytes()) {
            Err(ArtifactError::OverLimit { cap: named, .. }) => prop_assert_eq!(named, cap),
            other => prop_assert!(false, "{:?}: expected {}, got {:?}", shape, cap, other.map(|_| ())),
        }
    }

    #[test]
    fn expressions_and_conditions_get_an_answer(text in expression_text()) {
        let _ = parse_expression(&text);
        let _ = parse_condition(&text);
        // Deep parentheses are refused, not recursed into.
        let deep = format!("{}{text}{}", "(".repeat(5_000), ")".repeat(5_000));
        prop_assert!(parse_condition(&deep).is_err());
    }

    #[test]
    fn uri_templates_get_an_answer(text in template_text()) {
        if let Ok(template) = parse_uri_template(&text) {
            prop_assert_eq!(&template.raw, &text);
            prop_assert!(text.starts_with('/'));
        }
        let _ = parse_url_mapping(&text);
    }

    #[test]
    fn endpoint_hosts_with_placeholders_are_refused(
        before in "[a-z]{0,5}",
        after in "[a-z0-9.]{0,5}",
        port in any::<bool>(),
        path in "(/[a-z{}.]{0,8}){0,3}",
    ) {
        let authority = if port {
            format!("{before}h:{{uri.var.p}}{after}")
        } else {
            format!("{before}{{uri.var.h}}{after}")
        };
        let document = format!(
            r#"<api name="A" context="/a"><resource><inSequence><send><endpoint><http uri-template="http://{authority}{path}"/></endpoint></send></inSequence></resource></api>"#
        );
        match parse_artifact(document.as_bytes()) {
            Err(ArtifactError::Invalid { message, .. }) => {
                prop_assert!(message.contains("host or port"), "{}", message);
            }
            other => prop_assert!(false, "{}: {:?}", document, other.map(|_| ())),
        }
    }
}
