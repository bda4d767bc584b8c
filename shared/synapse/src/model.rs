//! The validated Synapse artifact model: what a gateway can execute.
//!
//! Everything here has passed validation, so the gateway never has to deal
//! with unknown mediators, dangling keys or unparsable expressions at request
//! time.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;

/// A deployable unit: one `<api>` plus the named elements it refers to.
///
/// A bare `<api>` document yields an artifact with empty maps.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub api: Api,
    /// Named `<endpoint name="..">` elements of a `<definitions>` bundle.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Named `<sequence name="..">` elements of a `<definitions>` bundle.
    pub sequences: BTreeMap<String, Sequence>,
    /// `<localEntry key="..">` values (text content, or raw inner XML).
    pub local_entries: BTreeMap<String, String>,
    /// Things accepted but not executed (Java handlers, class mediators).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Api {
    pub name: String,
    /// The `version` attribute, if any.
    pub version: Option<String>,
    /// The path prefix on the gateway, `{version}` already substituted,
    /// always starting with `/` and without a trailing `/` (except for `/`).
    pub context: String,
    pub resources: Vec<Resource>,
    /// `<handlers>`: Java classes, shown but not executed.
    pub handlers: Vec<Handler>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Handler {
    pub class: String,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Delete,
    Patch,
    Head,
    Options,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Head => "HEAD",
            HttpMethod::Options => "OPTIONS",
        }
    }

    /// Parses a method name case-insensitively, as Synapse does.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.to_ascii_uppercase().as_str() {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "DELETE" => HttpMethod::Delete,
            "PATCH" => HttpMethod::Patch,
            "HEAD" => HttpMethod::Head,
            "OPTIONS" => HttpMethod::Options,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Resource {
    /// Allowed methods; empty means every method.
    pub methods: Vec<HttpMethod>,
    pub matcher: ResourceMatcher,
    pub in_sequence: Option<Sequence>,
    pub out_sequence: Option<Sequence>,
    pub fault_sequence: Option<FaultSequence>,
}

/// How a resource matches the path after the API context.
#[derive(Debug, Clone)]
pub enum ResourceMatcher {
    /// No `uri-template` / `url-mapping`: everything under the context.
    Any,
    UriTemplate(UriTemplate),
    UrlMapping(UrlMapping),
}

/// A `uri-template` such as `/items/{id}` or `/search?q={query}`.
#[derive(Debug, Clone)]
pub struct UriTemplate {
    pub raw: String,
    /// Path segments after splitting on `/` (the leading empty one dropped).
    pub segments: Vec<TemplateSegment>,
    /// `?name={var}` pairs of the template's query part: query parameter
    /// name -> variable name.
    pub query: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSegment {
    Literal(String),
    /// `{name}`: exactly one path segment.
    Variable(String),
    /// `{+name}` or `*` as the last segment: the rest of the path.
    Rest(Option<String>),
}

/// A servlet-style `url-mapping` (`url-pattern` is the old spelling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlMapping {
    /// `/order`: the path must be exactly this.
    Exact(String),
    /// `/order/*`: this path or anything below it (the stored value has no `/*`).
    Prefix(String),
    /// `*.jsp`: the last segment ends with this extension (stored without `*`).
    Extension(String),
}

#[derive(Debug, Clone)]
pub enum FaultSequence {
    /// A named sequence of the bundle.
    Named(String),
    /// Synapse's built-in `fault` sequence (the gateway's default error body).
    BuiltinDefault,
    /// An inline `<faultSequence>` element.
    Inline(Sequence),
}

#[derive(Debug, Clone, Default)]
pub struct Sequence {
    pub name: Option<String>,
    pub mediators: Vec<Mediator>,
}

#[derive(Debug, Clone)]
pub enum Mediator {
    Log(LogMediator),
    Property(PropertyMediator),
    Header(HeaderMediator),
    PayloadFactory(PayloadFactory),
    Respond,
    Drop,
    Filter(Box<Filter>),
    /// `<send>`: `None` is an empty `<send/>`, which in an out-sequence
    /// returns the response to the client.
    Send(Option<EndpointRef>),
    /// `<call>`: blocking call whose response replaces the message.
    Call(EndpointRef),
    /// `<sequence key=".."/>`: run a named sequence of the bundle.
    SequenceRef(String),
    /// `<class name="..">`: accepted, not executed.
    Class(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LogLevel {
    Simple,
    Headers,
    Full,
    Custom,
}

#[derive(Debug, Clone)]
pub struct LogMediator {
    pub level: LogLevel,
    pub category: String,
    pub separator: String,
    pub properties: Vec<(String, ValueSource)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PropertyScope {
    /// The message context (`default`, `synapse`).
    Default,
    /// `axis2` / `axis2-client`: kept as context properties too.
    Axis2,
    /// `transport`: a header on the current message.
    Transport,
}

#[derive(Debug, Clone)]
pub enum PropertyAction {
    Set(ValueSource),
    Remove,
}

#[derive(Debug, Clone)]
pub struct PropertyMediator {
    pub name: String,
    pub scope: PropertyScope,
    pub action: PropertyAction,
}

#[derive(Debug, Clone)]
pub struct HeaderMediator {
    pub name: String,
    pub action: PropertyAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MediaType {
    Xml,
    Json,
    Text,
}

impl MediaType {
    pub fn content_type(self) -> &'static str {
        match self {
            MediaType::Xml => "application/xml",
            MediaType::Json => "application/json",
            MediaType::Text => "text/plain",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PayloadFactory {
    pub media_type: MediaType,
    /// The `<format>` template (inner XML as written, or JSON/text), with
    /// `$1..$n` placeholders.
    pub format: String,
    pub args: Vec<ValueSource>,
}

#[derive(Debug, Clone)]
pub struct Filter {
    pub condition: FilterCondition,
    pub then: Vec<Mediator>,
    pub otherwise: Vec<Mediator>,
}

#[derive(Debug, Clone)]
pub enum FilterCondition {
    /// `source` + `regex`: the regex must match the whole value.
    Regex { source: Expression, regex: Regex },
    /// `xpath="..."`: the supported boolean subset.
    XPath(Condition),
}

/// The boolean expressions a filter's `xpath` may hold.
#[derive(Debug, Clone)]
pub enum Condition {
    /// The expression evaluates to a non-empty value.
    Exists(Expression),
    Equals(Expression, String),
    NotEquals(Expression, String),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

#[derive(Debug, Clone)]
pub enum ValueSource {
    Literal(String),
    Expression(Expression),
}

/// The supported expression language (see DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// `get-property('uri.var.x')`
    UriVar(String),
    /// `get-property('query.param.x')`
    QueryParam(String),
    /// `get-property('SYSTEM_TIME')`: milliseconds since the epoch.
    SystemTime,
    /// `get-property('NAME')`, `get-property('default'|'axis2', 'NAME')`, `$ctx:NAME`
    Property(String),
    /// `$trp:Header`, `get-property('transport', 'Header')`
    Header(String),
    /// `$url:param`
    UrlParam(String),
    /// `json-eval($.a.b[0])`: field names and array indices.
    JsonPath(Vec<JsonPathStep>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonPathStep {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone)]
pub enum EndpointRef {
    Inline(Endpoint),
    /// A named endpoint of the bundle (validated to exist).
    Key(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub name: Option<String>,
    pub kind: EndpointKind,
    /// `<timeout><duration>ms</duration></timeout>`, if given.
    pub timeout: Option<Duration>,
    /// Attributes the gateway accepts and shows but does not act on
    /// (`format`, `optimize`, ...).
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub enum EndpointKind {
    /// `<http uri-template=".." method="..">`; `{uri.var.x}` placeholders.
    Http {
        uri_template: String,
        method: Option<HttpMethod>,
    },
    /// `<address uri="..">`.
    Address { uri: String },
}
