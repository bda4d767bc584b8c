//! A small DOM over quick-xml: just what validation needs (names,
//! namespaces, attributes, text, source positions and raw inner source).

use std::cell::Cell;
use std::ops::Range;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::{ArtifactError, LIMITS};

pub(crate) const SYNAPSE_NS: &str = "http://ws.apache.org/ns/synapse";

/// The namespace an element resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Namespace {
    /// No namespace at all (no default `xmlns` in scope, no prefix).
    None,
    Synapse,
    Other(String),
    /// A prefix without an `xmlns:prefix` declaration in scope. Only an error
    /// where a Synapse element is expected: payload formats are literal.
    UndeclaredPrefix(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Element {
    /// The local name, without prefix.
    pub name: String,
    pub namespace: Namespace,
    /// Attributes in document order, keyed by their name as written;
    /// namespace declarations are left out.
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// Direct text and CDATA content, unescaped and concatenated.
    pub text: String,
    /// Byte range of the source between the start and the end tag (empty for
    /// `<x/>`): payload formats and local entries are kept as written.
    pub inner: Range<usize>,
    pub line: usize,
    pub column: usize,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Debug)]
pub(crate) struct Document {
    pub root: Element,
    source: String,
}

impl Document {
    /// The source text between an element's start and end tags.
    pub fn inner_source(&self, element: &Element) -> &str {
        self.source.get(element.inner.clone()).unwrap_or("")
    }
}

/// Parses a UTF-8 XML document into a DOM, or reports where it is malformed.
pub(crate) fn parse_document(xml: &[u8]) -> Result<Document, ArtifactError> {
    let source = match std::str::from_utf8(xml) {
        Ok(text) => text,
        Err(error) => {
            return Err(malformed(
                xml,
                error.valid_up_to(),
                "the document is not valid UTF-8".to_string(),
            ));
        }
    };
    let root = Builder::new(source).run()?;
    Ok(Document {
        root,
        source: source.to_string(),
    })
}

/// Turns a byte offset into a 1-based line and a 1-based column counted in
/// characters, so multi-byte text before an error does not skew the column.
pub(crate) fn line_column(source: &[u8], offset: usize) -> (usize, usize) {
    LineIndex::new(source).position(offset)
}

/// Line starts of a document, computed once: every element needs its
/// position, and rescanning from the start each time would be quadratic.
/// Columns count characters, so the last position found is remembered and
/// the next one on the same line counts on from it: elements come in
/// document order, and a document on one line stays linear.
struct LineIndex<'s> {
    source: &'s [u8],
    line_starts: Vec<usize>,
    /// The last offset asked for, with its line and column.
    last: Cell<(usize, usize, usize)>,
}

impl<'s> LineIndex<'s> {
    fn new(source: &'s [u8]) -> Self {
        let line_starts = std::iter::once(0)
            .chain(
                source
                    .iter()
                    .enumerate()
                    .filter(|(_, byte)| **byte == b'\n')
                    .map(|(index, _)| index + 1),
            )
            .collect();
        LineIndex {
            source,
            line_starts,
            last: Cell::new((0, 1, 1)),
        }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let line_start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let (last_offset, last_line, last_column) = self.last.get();
        let (from, column) = if last_line == line && last_offset <= offset {
            (last_offset, last_column)
        } else {
            (line_start, 1)
        };
        let column = column
            + self.source[from..offset]
                .iter()
                .filter(|&&byte| byte & 0xC0 != 0x80)
                .count();
        self.last.set((offset, line, column));
        (line, column)
    }
}

fn malformed(source: &[u8], offset: usize, message: String) -> ArtifactError {
    malformed_at(line_column(source, offset), message)
}

fn malformed_at((line, column): (usize, usize), message: String) -> ArtifactError {
    ArtifactError::Malformed {
        line,
        column,
        message,
    }
}

fn to_usize(position: u64) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

struct Builder<'s> {
    source: &'s str,
    lines: LineIndex<'s>,
    reader: NsReader<&'s [u8]>,
    /// Open elements, innermost last.
    open: Vec<Element>,
    root: Option<Element>,
    /// Elements read so far, for `LIMITS.max_elements`.
    elements: usize,
}

impl<'s> Builder<'s> {
    fn new(source: &'s str) -> Self {
        Builder {
            source,
            lines: LineIndex::new(source.as_bytes()),
            reader: NsReader::from_str(source),
            open: Vec::new(),
            root: None,
            elements: 0,
        }
    }

    fn run(mut self) -> Result<Element, ArtifactError> {
        loop {
            // With text events never trimmed, the position before an event is
            // exactly where its markup starts.
            let start = to_usize(self.reader.buffer_position());
            let (namespace, event) = match self.reader.read_resolved_event() {
                Ok((resolved, event)) => (namespace_of(&resolved), event),
                Err(error) => {
                    let offset = to_usize(self.reader.error_position());
                    return Err(self.malformed_at(offset, error.to_string()));
                }
            };
            let end = to_usize(self.reader.buffer_position());
            match event {
                Event::Start(tag) => {
                    if self.open.len() >= LIMITS.max_xml_depth {
                        return Err(self.over_limit(
                            &tag,
                            start,
                            "max_xml_depth",
                            LIMITS.max_xml_depth,
                            "element nesting (elements nest deeper)".to_string(),
                        ));
                    }
                    let mut element = self.open_element(&tag, namespace, start)?;
                    element.inner = end..end;
                    self.open.push(element);
                }
                Event::Empty(tag) => {
                    let mut element = self.open_element(&tag, namespace, start)?;
                    element.inner = end..end;
                    self.close_element(element, start)?;
                }
                Event::End(_) => {
                    // quick-xml already checked the end tag matches.
                    if let Some(mut element) = self.open.pop() {
                        element.inner.end = start;
                        self.close_element(element, start)?;
                    }
                }
                Event::Text(text) => {
                    let content = text.decode().map_err(|error| {
                        self.malformed_at(start, format!("cannot decode text: {error}"))
                    })?;
                    self.add_text(&content, start)?;
                }
                Event::CData(data) => {
                    let content = data.decode().map_err(|error| {
                        self.malformed_at(start, format!("cannot decode CDATA: {error}"))
                    })?;
                    self.add_text(&content, start)?;
                }
                Event::GeneralRef(reference) => {
                    let resolved = self.resolve_reference(&reference, start)?;
                    self.add_text(&resolved, start)?;
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
                Event::Eof => return self.finish(),
            }
        }
    }

    fn malformed_at(&self, offset: usize, message: String) -> ArtifactError {
        malformed_at(self.lines.position(offset), message)
    }

    fn over_limit(
        &self,
        tag: &BytesStart<'_>,
        start: usize,
        cap: &'static str,
        max: usize,
        what: String,
    ) -> ArtifactError {
        let (line, column) = self.lines.position(start);
        ArtifactError::OverLimit {
            element: String::from_utf8_lossy(tag.local_name().as_ref()).into_owned(),
            line,
            column,
            cap,
            max,
            what,
        }
    }

    fn open_element(
        &mut self,
        tag: &BytesStart<'_>,
        namespace: Namespace,
        start: usize,
    ) -> Result<Element, ArtifactError> {
        self.elements += 1;
        if self.elements > LIMITS.max_elements {
            return Err(self.over_limit(
                tag,
                start,
                "max_elements",
                LIMITS.max_elements,
                "the number of elements".to_string(),
            ));
        }
        let name = String::from_utf8_lossy(tag.local_name().as_ref()).into_owned();
        let attributes = self.attributes(tag, start)?;
        let (line, column) = self.lines.position(start);
        Ok(Element {
            name,
            namespace,
            attributes,
            children: Vec::new(),
            text: String::new(),
            inner: 0..0,
            line,
            column,
        })
    }

    /// Attribute syntax is only checked when the attributes are iterated,
    /// so every attribute is read here, namespace declarations included.
    ///
    /// quick-xml's duplicate check compares each attribute with every one
    /// before it, so the attributes are first counted without it (linear,
    /// stopping at the cap); only a tag within the cap gets the checked
    /// read, whose cost is then bounded by the cap squared.
    fn attributes(
        &self,
        tag: &BytesStart<'_>,
        start: usize,
    ) -> Result<Vec<(String, String)>, ArtifactError> {
        let count = tag
            .attributes()
            .with_checks(false)
            .take(LIMITS.max_attributes_per_element + 1)
            .count();
        if count > LIMITS.max_attributes_per_element {
            return Err(self.over_limit(
                tag,
                start,
                "max_attributes_per_element",
                LIMITS.max_attributes_per_element,
                "the number of attributes on one element".to_string(),
            ));
        }
        let mut attributes = Vec::with_capacity(count);
        for attribute in tag.attributes() {
            let attribute = attribute.map_err(|error| {
                // Attribute error positions count from just after the `<`.
                let offset = start + 1 + attr_error_offset(&error);
                self.malformed_at(offset, error.to_string())
            })?;
            let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
            let value = attribute
                .decode_and_unescape_value(self.reader.decoder())
                .map_err(|error| self.malformed_at(start, format!("attribute `{key}`: {error}")))?;
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            attributes.push((key, value.into_owned()));
        }
        Ok(attributes)
    }

    fn resolve_reference(
        &self,
        reference: &BytesRef<'_>,
        start: usize,
    ) -> Result<String, ArtifactError> {
        let unknown =
            || self.malformed_at(start, "unknown or invalid entity reference".to_string());
        if reference.is_char_ref() {
            return match reference.resolve_char_ref() {
                Ok(Some(character)) => Ok(character.to_string()),
                Ok(None) | Err(_) => Err(unknown()),
            };
        }
        let name = reference.decode().map_err(|_| unknown())?;
        quick_xml::escape::resolve_predefined_entity(&name)
            .map(str::to_string)
            .ok_or_else(|| {
                self.malformed_at(
                    start,
                    format!(
                        "unknown entity `&{name};` (only the predefined XML entities are allowed)"
                    ),
                )
            })
    }

    fn close_element(&mut self, element: Element, start: usize) -> Result<(), ArtifactError> {
        if let Some(parent) = self.open.last_mut() {
            parent.children.push(element);
            return Ok(());
        }
        if self.root.is_some() {
            return Err(self.malformed_at(
                start,
                format!(
                    "a second root element <{}>; a document has exactly one",
                    element.name
                ),
            ));
        }
        self.root = Some(element);
        Ok(())
    }

    fn add_text(&mut self, content: &str, start: usize) -> Result<(), ArtifactError> {
        if let Some(parent) = self.open.last_mut() {
            parent.text.push_str(content);
            return Ok(());
        }
        if content.trim().is_empty() {
            return Ok(());
        }
        Err(self.malformed_at(start, "text outside the root element".to_string()))
    }

    fn finish(mut self) -> Result<Element, ArtifactError> {
        let end = self.source.len();
        if let Some(unclosed) = self.open.pop() {
            return Err(self.malformed_at(
                end,
                format!(
                    "unexpected end of document: <{}> opened at line {}, column {} is not closed",
                    unclosed.name, unclosed.line, unclosed.column
                ),
            ));
        }
        match self.root.take() {
            Some(root) => Ok(root),
            None => Err(self.malformed_at(end, "the document has no root element".to_string())),
        }
    }
}

fn attr_error_offset(error: &quick_xml::events::attributes::AttrError) -> usize {
    use quick_xml::events::attributes::AttrError;
    match *error {
        AttrError::ExpectedEq(position)
        | AttrError::ExpectedValue(position)
        | AttrError::UnquotedValue(position)
        | AttrError::ExpectedQuote(position, _)
        | AttrError::Duplicated(position, _) => position,
    }
}

fn namespace_of(resolved: &ResolveResult<'_>) -> Namespace {
    match resolved {
        ResolveResult::Unbound => Namespace::None,
        ResolveResult::Bound(namespace) => {
            let uri = String::from_utf8_lossy(namespace.as_ref());
            if uri == SYNAPSE_NS {
                Namespace::Synapse
            } else if uri.is_empty() {
                // `xmlns=""` undeclares the default namespace.
                Namespace::None
            } else {
                Namespace::Other(uri.into_owned())
            }
        }
        ResolveResult::Unknown(prefix) => {
            Namespace::UndeclaredPrefix(String::from_utf8_lossy(prefix).into_owned())
        }
    }
}
