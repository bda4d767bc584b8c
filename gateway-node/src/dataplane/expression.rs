//! Evaluating the expression subset (DESIGN.md §3) against a message, filter
//! conditions, and `payloadFactory` rendering with its escaping rules.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use artisync_synapse::{
    Condition, Expression, FilterCondition, JsonPathStep, MediaType, ValueSource,
};

use super::context::{MessageContext, Postfix};

/// An evaluated expression. JSON results are kept as JSON so that a
/// `payloadFactory` can insert objects and numbers as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'c> {
    Text(Cow<'c, str>),
    Json(serde_json::Value),
}

impl<'c> Value<'c> {
    /// The value as text: JSON strings without quotes, other JSON as JSON.
    pub fn into_text(self) -> Cow<'c, str> {
        match self {
            Value::Text(text) => text,
            Value::Json(serde_json::Value::String(s)) => Cow::Owned(s),
            Value::Json(other) => Cow::Owned(other.to_string()),
        }
    }
}

/// Does evaluating this expression need the message body in memory?
pub fn reads_body(expression: &Expression) -> bool {
    matches!(expression, Expression::JsonPath(_))
}

/// Does this value source need the message body in memory?
pub fn source_reads_body(source: &ValueSource) -> bool {
    matches!(source, ValueSource::Expression(e) if reads_body(e))
}

/// Evaluates an expression; `None` when it has no value (an unset property,
/// a missing header, a JSON path that leads nowhere).
pub fn evaluate<'c>(expression: &Expression, ctx: &'c MessageContext<'_>) -> Option<Value<'c>> {
    let text = match expression {
        Expression::UriVar(name) => Cow::Borrowed(ctx.uri_var(name)?),
        Expression::QueryParam(name) | Expression::UrlParam(name) => ctx.query_param(name)?,
        Expression::SystemTime => Cow::Owned(system_time_millis().to_string()),
        Expression::Property(name) => property(ctx, name)?,
        Expression::Header(name) => {
            let value = ctx.headers.get(name.as_str())?;
            // Header values are bytes; non-UTF-8 ones are shown lossily
            // rather than treated as absent.
            match value.to_str() {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => Cow::Owned(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            }
        }
        Expression::JsonPath(steps) => {
            return json_path(ctx.body.as_bytes()?, steps).map(Value::Json);
        }
    };
    Some(Value::Text(text))
}

/// Evaluates an expression as text.
pub fn evaluate_text<'c>(
    expression: &Expression,
    ctx: &'c MessageContext<'_>,
) -> Option<Cow<'c, str>> {
    evaluate(expression, ctx).map(Value::into_text)
}

/// A literal or an expression, as text.
pub fn source_text<'c>(
    source: &'c ValueSource,
    ctx: &'c MessageContext<'_>,
) -> Option<Cow<'c, str>> {
    match source {
        ValueSource::Literal(text) => Some(Cow::Borrowed(text)),
        ValueSource::Expression(expression) => evaluate_text(expression, ctx),
    }
}

/// A literal or an expression, keeping JSON results as JSON.
pub fn source_value<'c>(source: &'c ValueSource, ctx: &'c MessageContext<'_>) -> Option<Value<'c>> {
    match source {
        ValueSource::Literal(text) => Some(Value::Text(Cow::Borrowed(text))),
        ValueSource::Expression(expression) => evaluate(expression, ctx),
    }
}

fn system_time_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// `get-property('NAME')`: a context property, or one of the properties
/// Synapse itself sets on every REST message.
fn property<'c>(ctx: &'c MessageContext<'_>, name: &str) -> Option<Cow<'c, str>> {
    if let Some(value) = ctx.property(name) {
        return Some(Cow::Borrowed(value));
    }
    let api = &ctx.api.artifact.api;
    Some(match name {
        "HTTP_SC" => Cow::Owned(ctx.status().as_u16().to_string()),
        "REST_API_CONTEXT" => Cow::Borrowed(api.context.as_str()),
        "REST_SUB_REQUEST_PATH" => Cow::Borrowed(ctx.remainder),
        "REST_FULL_REQUEST_PATH" => match ctx.query {
            Some(query) => Cow::Owned(format!("{}?{query}", ctx.path)),
            None => Cow::Borrowed(ctx.path),
        },
        "REST_URL_POSTFIX" => match &ctx.postfix {
            Postfix::Default => match ctx.query {
                Some(query) => Cow::Owned(format!("{}?{query}", ctx.remainder)),
                None => Cow::Borrowed(ctx.remainder),
            },
            Postfix::Removed => return None,
            Postfix::Set(value) => Cow::Borrowed(value.as_str()),
        },
        "REST_METHOD" | "HTTP_METHOD" => Cow::Borrowed(ctx.method.as_str()),
        "SYNAPSE_REST_API" | "API_NAME" => Cow::Borrowed(api.name.as_str()),
        "SYNAPSE_REST_API_VERSION" | "SYNAPSE_RESTAPI_VERSION" => {
            Cow::Borrowed(api.version.as_deref()?)
        }
        _ => return None,
    })
}

/// Follows `$.a.b[0]` through a JSON body; `None` if the body is not JSON or
/// the path leads nowhere.
pub fn json_path(body: &[u8], steps: &[JsonPathStep]) -> Option<serde_json::Value> {
    let root: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut current = &root;
    for step in steps {
        current = match step {
            JsonPathStep::Field(name) => current.get(name.as_str())?,
            JsonPathStep::Index(index) => current.get(*index)?,
        };
    }
    Some(current.clone())
}

/// Does the body need buffering before this filter condition is evaluated?
pub fn filter_reads_body(condition: &FilterCondition) -> bool {
    match condition {
        FilterCondition::Regex { source, .. } => reads_body(source),
        FilterCondition::XPath(condition) => super::routing::condition_reads_body(condition),
    }
}

/// Evaluates a filter's condition. A regex source without a value does not
/// match (Synapse takes the `else` branch), so an unset `AM_KEY_TYPE`
/// selects the sandbox endpoint of a WSO2 API.
pub fn filter_matches(condition: &FilterCondition, ctx: &MessageContext<'_>) -> bool {
    match condition {
        FilterCondition::Regex { source, regex } => evaluate_text(source, ctx)
            .is_some_and(|value| ctx.api.regex_matches_whole(regex, &value)),
        FilterCondition::XPath(condition) => condition_holds(condition, ctx),
    }
}

fn condition_holds(condition: &Condition, ctx: &MessageContext<'_>) -> bool {
    match condition {
        Condition::Exists(e) => evaluate_text(e, ctx).is_some_and(|v| !v.is_empty()),
        Condition::Equals(e, expected) => evaluate_text(e, ctx).unwrap_or_default() == *expected,
        Condition::NotEquals(e, expected) => evaluate_text(e, ctx).unwrap_or_default() != *expected,
        Condition::And(a, b) => condition_holds(a, ctx) && condition_holds(b, ctx),
        Condition::Or(a, b) => condition_holds(a, ctx) || condition_holds(b, ctx),
        Condition::Not(c) => !condition_holds(c, ctx),
    }
}

/// Fills `$1..$n` of a `payloadFactory` format. Text arguments are escaped
/// for the media type (JSON string content, or XML character data); JSON
/// results other than strings are inserted as JSON. `$0`, indices past the
/// arguments and a `$` without digits are kept as written; an argument
/// without a value inserts nothing.
pub fn render_payload(format: &str, media_type: MediaType, args: &[Option<Value<'_>>]) -> String {
    let mut out = String::with_capacity(format.len() + 16 * args.len());
    let mut rest = format;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let arg = after[..digits]
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1 && *n <= args.len())
            .and_then(|n| args.get(n - 1));
        match arg {
            Some(value) => {
                if let Some(value) = value {
                    push_arg(&mut out, media_type, value);
                }
                rest = &after[digits..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn push_arg(out: &mut String, media_type: MediaType, value: &Value<'_>) {
    match (media_type, value) {
        (MediaType::Json, Value::Text(text)) => push_json_escaped(out, text),
        (MediaType::Json, Value::Json(serde_json::Value::String(text))) => {
            push_json_escaped(out, text)
        }
        (MediaType::Json, Value::Json(json)) => out.push_str(&json.to_string()),
        (MediaType::Xml, Value::Text(text)) => push_xml_escaped(out, text),
        (MediaType::Xml, Value::Json(serde_json::Value::String(text))) => {
            push_xml_escaped(out, text)
        }
        (MediaType::Xml, Value::Json(json)) => push_xml_escaped(out, &json.to_string()),
        (MediaType::Text, Value::Text(text)) => out.push_str(text),
        (MediaType::Text, Value::Json(serde_json::Value::String(text))) => out.push_str(text),
        (MediaType::Text, Value::Json(json)) => out.push_str(&json.to_string()),
    }
}

/// Appends `text` escaped as the content of a JSON string (no quotes).
pub fn push_json_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// Appends `text` escaped as XML character data (also safe in attributes).
pub fn push_xml_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}
