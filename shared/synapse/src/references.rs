//! What a Synapse configuration file is and what it refers to by key,
//! without validating it: how `artisync import wso2` finds the endpoints,
//! sequences and local entries an API needs. One pass over the events,
//! with no recursion, so deep documents cost no stack.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// The kind of a top-level Synapse element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementKind {
    Api,
    Endpoint,
    Sequence,
    LocalEntry,
    /// Anything else (proxy, task, message store, inbound endpoint ...).
    Other,
}

impl ElementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ElementKind::Api => "api",
            ElementKind::Endpoint => "endpoint",
            ElementKind::Sequence => "sequence",
            ElementKind::LocalEntry => "localEntry",
            ElementKind::Other => "other",
        }
    }
}

/// A file's root element, its name, and the keys it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub kind: ElementKind,
    /// The root element's local name as written.
    pub root: String,
    /// `name` (or `key` for local entries).
    pub name: Option<String>,
    /// Keys of endpoints, sequences and local entries referred to, in
    /// document order, without repeats.
    pub references: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("not well-formed XML at byte {position}: {message}")]
pub struct DescribeError {
    pub position: u64,
    pub message: String,
}

/// Attributes that name another configuration element by key.
const REFERENCE_ATTRIBUTES: &[&[u8]] = &[
    b"inSequence",
    b"outSequence",
    b"faultSequence",
    b"onError",
    b"configKey",
];

fn local_name(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

fn attribute(start: &BytesStart<'_>, wanted: &[u8]) -> Option<String> {
    start.attributes().flatten().find_map(|a| {
        (a.key.as_ref() == wanted)
            .then(|| a.unescape_value().ok().map(|v| v.into_owned()))
            .flatten()
    })
}

/// Describes one Synapse configuration file.
pub fn describe(xml: &[u8]) -> Result<Described, DescribeError> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut root: Option<Described> = None;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| DescribeError {
                position: reader.buffer_position(),
                message: e.to_string(),
            })?;
        let (start, _empty) = match &event {
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::Eof => break,
            _ => {
                buf.clear();
                continue;
            }
        };
        let element = local_name(start.name().as_ref()).to_vec();
        match &mut root {
            None => {
                let kind = match element.as_slice() {
                    b"api" => ElementKind::Api,
                    b"endpoint" => ElementKind::Endpoint,
                    b"sequence" => ElementKind::Sequence,
                    b"localEntry" => ElementKind::LocalEntry,
                    _ => ElementKind::Other,
                };
                let name = if kind == ElementKind::LocalEntry {
                    attribute(start, b"key")
                } else {
                    attribute(start, b"name")
                };
                let mut described = Described {
                    kind,
                    root: String::from_utf8_lossy(&element).into_owned(),
                    name,
                    references: Vec::new(),
                };
                collect(&mut described.references, start, &element, true);
                root = Some(described);
            }
            Some(described) => collect(&mut described.references, start, &element, false),
        }
        buf.clear();
    }
    root.ok_or(DescribeError {
        position: 0,
        message: "the document has no root element".to_owned(),
    })
}

fn collect(out: &mut Vec<String>, start: &BytesStart<'_>, element: &[u8], is_root: bool) {
    let mut push = |key: String| {
        if !key.is_empty() && !out.contains(&key) {
            out.push(key);
        }
    };
    // `<endpoint key=".."/>` and `<sequence key=".."/>` refer; a root
    // `<localEntry key="..">` names itself.
    if !is_root
        && matches!(element, b"endpoint" | b"sequence")
        && let Some(key) = attribute(start, b"key")
    {
        push(key);
    }
    for wanted in REFERENCE_ATTRIBUTES {
        if let Some(key) = attribute(start, wanted) {
            push(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_refers_to_its_endpoints_and_sequences_once_each() {
        let xml = br#"<?xml version="1.0"?><api xmlns="http://ws.apache.org/ns/synapse" name="A" context="/a">
            <resource methods="GET" faultSequence="fault"><inSequence>
              <send><endpoint key="E1"/></send><send><endpoint key="E1"/></send>
              <sequence key="S1"/>
            </inSequence></resource></api>"#;
        let d = describe(xml).unwrap();
        assert_eq!(d.kind, ElementKind::Api);
        assert_eq!(d.name.as_deref(), Some("A"));
        assert_eq!(d.references, ["fault", "E1", "S1"]);
    }

    #[test]
    fn a_local_entry_is_named_by_its_key_and_a_proxy_is_other() {
        let d = describe(br#"<localEntry key="cfg">text</localEntry>"#).unwrap();
        assert_eq!(
            (d.kind, d.name.as_deref()),
            (ElementKind::LocalEntry, Some("cfg"))
        );
        let d = describe(br#"<proxy name="P"/>"#).unwrap();
        assert_eq!(d.kind, ElementKind::Other);
        assert_eq!(d.root, "proxy");
    }

    #[test]
    fn deep_documents_and_garbage_are_handled_without_recursion() {
        let mut xml = String::from("<sequence name=\"deep\">");
        for _ in 0..100_000 {
            xml.push_str("<filter>");
        }
        let d = describe(xml.as_bytes()).unwrap();
        assert_eq!(d.kind, ElementKind::Sequence);
        assert!(describe(b"<api <").is_err());
        assert!(describe(b"   ").is_err());
    }
}
