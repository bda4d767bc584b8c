//! The expression language of `expression=` / `source=` attributes and the
//! boolean subset of a filter's `xpath=` (DESIGN.md §3).
//!
//! Synapse hands these to an XPath engine; a gateway only needs the handful
//! of forms WSO2-generated artifacts use, so anything else is refused at
//! publish time instead of misbehaving at request time.

use super::model::{Condition, Expression, JsonPathStep};

/// The expression forms accepted, for error messages.
pub const SUPPORTED_EXPRESSIONS: &str = "get-property('uri.var.x'), get-property('query.param.x'), \
get-property('SYSTEM_TIME'), get-property('NAME'), get-property('default'|'axis2'|'transport', 'NAME'), \
$ctx:NAME, $trp:Header, $url:param, json-eval($.a.b[0])";

/// The filter `xpath` forms accepted, for error messages.
pub const SUPPORTED_CONDITIONS: &str = "expr (true when non-empty), expr = 'literal', \
expr != 'literal', a and b, a or b, not(a), (a); where expr is one of: get-property('uri.var.x'), \
get-property('query.param.x'), get-property('SYSTEM_TIME'), get-property('NAME'), \
get-property('default'|'axis2'|'transport', 'NAME'), $ctx:NAME, $trp:Header, $url:param, \
json-eval($.a.b[0])";

/// Parses one expression; the error says what was not understood.
pub fn parse_expression(raw: &str) -> Result<Expression, String> {
    let text = raw.trim();
    if let Some(rest) = text.strip_prefix("get-property") {
        let args = call_arguments(rest).map_err(|why| format!("get-property: {why}"))?;
        return get_property(&args);
    }
    if let Some(rest) = text.strip_prefix("json-eval") {
        return json_eval(rest).map_err(|why| format!("json-eval: {why}"));
    }
    if let Some(rest) = text.strip_prefix('$') {
        return variable(rest);
    }
    if text.is_empty() {
        return Err("empty expression".to_string());
    }
    Err("not one of the supported expression forms".to_string())
}

fn get_property(args: &[String]) -> Result<Expression, String> {
    match args {
        [name] => Ok(single_property(name)?),
        [scope, name] => scoped_property(scope, name),
        _ => Err(format!(
            "get-property takes one or two arguments, got {}",
            args.len()
        )),
    }
}

fn single_property(name: &str) -> Result<Expression, String> {
    if let Some(var) = name.strip_prefix("uri.var.") {
        return Ok(Expression::UriVar(non_empty(var, "uri.var.")?));
    }
    if let Some(param) = name.strip_prefix("query.param.") {
        return Ok(Expression::QueryParam(non_empty(param, "query.param.")?));
    }
    if name == "SYSTEM_TIME" {
        return Ok(Expression::SystemTime);
    }
    Ok(Expression::Property(non_empty(name, "property")?))
}

fn scoped_property(scope: &str, name: &str) -> Result<Expression, String> {
    let name = non_empty(name, "property")?;
    match scope {
        "default" | "axis2" | "axis2-client" => Ok(Expression::Property(name)),
        "transport" => Ok(Expression::Header(name)),
        other => Err(format!(
            "scope '{other}' is not supported (use 'default', 'axis2' or 'transport')"
        )),
    }
}

fn non_empty(name: &str, what: &str) -> Result<String, String> {
    if name.trim().is_empty() {
        Err(format!("missing name after {what}"))
    } else {
        Ok(name.to_string())
    }
}

/// Parses `( 'a' , "b" )` (whitespace tolerant) after a function name.
fn call_arguments(rest: &str) -> Result<Vec<String>, String> {
    let mut chars = rest.trim_start().strip_prefix('(').ok_or("expected `(`")?;
    let mut args = Vec::new();
    loop {
        chars = chars.trim_start();
        let (literal, after) = quoted(chars).ok_or("arguments must be quoted strings")?;
        args.push(literal.to_string());
        chars = after.trim_start();
        if let Some(after) = chars.strip_prefix(',') {
            chars = after;
        } else if let Some(after) = chars.strip_prefix(')') {
            if after.trim().is_empty() {
                return Ok(args);
            }
            return Err(format!("unexpected `{}` after the call", after.trim()));
        } else {
            return Err("expected `,` or `)`".to_string());
        }
    }
}

/// Splits a leading `'...'` or `"..."` literal off `text`.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &text[1..];
    let close = body.find(quote)?;
    Some((&body[..close], &body[close + 1..]))
}

fn variable(rest: &str) -> Result<Expression, String> {
    let (kind, name) = rest
        .split_once(':')
        .ok_or("expected $ctx:, $trp: or $url:")?;
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(format!("`{name}` is not a valid name"));
    }
    let name = name.to_string();
    match kind {
        "ctx" => Ok(Expression::Property(name)),
        "trp" => Ok(Expression::Header(name)),
        "url" => Ok(Expression::UrlParam(name)),
        other => Err(format!(
            "${other}: is not supported (use $ctx:, $trp: or $url:)"
        )),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn json_eval(rest: &str) -> Result<Expression, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|inner| inner.strip_suffix(')'))
        .ok_or("expected json-eval(<path>)")?;
    Ok(Expression::JsonPath(json_path(inner.trim())?))
}

/// Parses the JSONPath subset `$`, `.field`, `['field']`, `[index]`.
fn json_path(path: &str) -> Result<Vec<JsonPathStep>, String> {
    let mut rest = path
        .strip_prefix('$')
        .ok_or("a JSON path must start with `$`")?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            if field.is_empty() || field == "*" || !field.chars().all(is_field_char) {
                return Err(format!(
                    "only plain field names, quoted names and indices are supported in a JSON path, not `.{field}`"
                ));
            }
            steps.push(JsonPathStep::Field(field.to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let (step, after) = bracket_step(after)?;
            steps.push(step);
            rest = after;
        } else {
            return Err(format!("unexpected `{rest}` in the JSON path"));
        }
    }
    Ok(steps)
}

fn is_field_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '$' | '@')
}

fn bracket_step(after_open: &str) -> Result<(JsonPathStep, &str), String> {
    let trimmed = after_open.trim_start();
    if let Some((name, after)) = quoted(trimmed) {
        let after = after.trim_start().strip_prefix(']').ok_or("expected `]`")?;
        return Ok((JsonPathStep::Field(name.to_string()), after));
    }
    let close = trimmed.find(']').ok_or("expected `]`")?;
    let index = trimmed[..close].trim();
    let index = index.parse::<usize>().map_err(|_| {
        format!(
            "only numeric indices and quoted names are supported in a JSON path, not `[{index}]`"
        )
    })?;
    Ok((JsonPathStep::Index(index), &trimmed[close + 1..]))
}

/// Parses a filter's `xpath` within the supported boolean subset.
pub fn parse_condition(raw: &str) -> Result<Condition, String> {
    let mut parser = ConditionParser {
        text: raw,
        pos: 0,
        depth: 0,
    };
    let condition = parser.or()?;
    parser.skip_whitespace();
    if parser.pos < raw.len() {
        return Err(format!("unexpected `{}`", parser.rest()));
    }
    Ok(condition)
}

/// A comparison operand: an expression or a string literal.
enum Operand {
    Expression(Expression),
    Literal(String),
}

/// Parenthesis nesting allowed in a condition; the parser recurses per level.
const MAX_CONDITION_DEPTH: usize = 32;

struct ConditionParser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> ConditionParser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_whitespace();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Eats a keyword only as a whole word, so `$ctx:order` is not `or`.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        self.skip_whitespace();
        let rest = self.rest();
        let Some(after) = rest.strip_prefix(keyword) else {
            return false;
        };
        let whole_word = after
            .chars()
            .next()
            .is_some_and(|c| c.is_whitespace() || c == '(');
        if whole_word {
            self.pos += keyword.len();
        }
        whole_word
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut left = self.and()?;
        while self.eat_keyword("or") {
            let right = self.and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut left = self.unary()?;
        while self.eat_keyword("and") {
            let right = self.unary()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, String> {
        self.depth += 1;
        if self.depth > MAX_CONDITION_DEPTH {
            return Err(format!(
                "parentheses nest deeper than {MAX_CONDITION_DEPTH} levels"
            ));
        }
        let condition = self.unary_inner();
        self.depth -= 1;
        condition
    }

    fn unary_inner(&mut self) -> Result<Condition, String> {
        if self.eat_keyword("not") {
            if !self.eat("(") {
                return Err("expected `(` after not".to_string());
            }
            let inner = self.or()?;
            self.expect_close()?;
            return Ok(Condition::Not(Box::new(inner)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            self.expect_close()?;
            return Ok(inner);
        }
        self.comparison()
    }

    fn expect_close(&mut self) -> Result<(), String> {
        if self.eat(")") {
            Ok(())
        } else {
            Err(format!("expected `)` at `{}`", self.rest()))
        }
    }

    fn comparison(&mut self) -> Result<Condition, String> {
        let left = self.operand()?;
        let negated = if self.eat("!=") {
            true
        } else if self.eat("=") {
            false
        } else {
            return match left {
                Operand::Expression(expression) => Ok(Condition::Exists(expression)),
                Operand::Literal(literal) => {
                    Err(format!("a bare literal '{literal}' is not a condition"))
                }
            };
        };
        let right = self.operand()?;
        let (expression, literal) = match (left, right) {
            (Operand::Expression(e), Operand::Literal(l))
            | (Operand::Literal(l), Operand::Expression(e)) => (e, l),
            _ => return Err("a comparison needs one expression and one quoted literal".to_string()),
        };
        Ok(if negated {
            Condition::NotEquals(expression, literal)
        } else {
            Condition::Equals(expression, literal)
        })
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_whitespace();
        let rest = self.rest();
        if let Some((literal, after)) = quoted(rest) {
            self.pos += rest.len() - after.len();
            return Ok(Operand::Literal(literal.to_string()));
        }
        let length = if rest.starts_with("get-property") || rest.starts_with("json-eval") {
            call_length(rest).ok_or_else(|| format!("unbalanced parentheses in `{rest}`"))?
        } else if rest.starts_with('$') {
            rest.find(|c: char| c.is_whitespace() || matches!(c, '=' | '!' | '(' | ')'))
                .unwrap_or(rest.len())
        } else if rest.is_empty() {
            return Err("unexpected end of condition".to_string());
        } else {
            return Err(format!("`{rest}` is not a supported condition"));
        };
        let text = &rest[..length];
        let expression = parse_expression(text).map_err(|why| format!("`{text}`: {why}"))?;
        self.pos += length;
        Ok(Operand::Expression(expression))
    }
}

/// Length of a `name( ... )` call up to its matching `)`, skipping quoted
/// strings (JSON paths and property names may hold parentheses).
fn call_length(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (index, c) in text.char_indices() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(index + 1);
                }
            }
            (None, _) => {}
        }
    }
    None
}
