//! Mediators: `log`, `property`, `header`, `payloadFactory`, `respond`,
//! `drop`, `filter`, `send`, `call`, `sequence`, `class`.

use super::*;

impl<'d> Validator<'d> {
    pub(super) fn mediators(&mut self, parent: &Element) -> Result<Vec<Mediator>, ArtifactError> {
        parent
            .children
            .iter()
            .filter(|child| !(child.name == "description" && is_synapse(child)))
            .map(|child| self.mediator(child))
            .collect()
    }

    pub(super) fn mediator(&mut self, element: &Element) -> Result<Mediator, ArtifactError> {
        expect_synapse(element, MEDIATORS)?;
        match element.name.as_str() {
            "log" => Ok(Mediator::Log(log_mediator(element)?)),
            "property" => Ok(Mediator::Property(property_mediator(element)?)),
            "header" => Ok(Mediator::Header(header_mediator(element)?)),
            "payloadFactory" => Ok(Mediator::PayloadFactory(self.payload_factory(element)?)),
            "respond" => Ok(Mediator::Respond),
            "drop" => Ok(Mediator::Drop),
            "filter" => Ok(Mediator::Filter(Box::new(self.filter(element)?))),
            "send" => Ok(Mediator::Send(self.send(element)?)),
            "call" => Ok(Mediator::Call(self.call(element)?)),
            "sequence" => Ok(Mediator::SequenceRef(self.sequence_ref(element)?)),
            "class" => {
                let class = required(element, "name")?.to_string();
                self.classes.push(class.clone());
                Ok(Mediator::Class(class))
            }
            _ => Err(unknown(element, "is not a supported mediator", MEDIATORS)),
        }
    }

    pub(super) fn sequence_ref(&mut self, element: &Element) -> Result<String, ArtifactError> {
        let key = required(element, "key")?;
        if !self.bundle.sequences.contains_key(key) {
            self.note_missing(element, "sequence", key);
        }
        Ok(key.to_string())
    }

    pub(super) fn payload_factory(
        &mut self,
        element: &Element,
    ) -> Result<PayloadFactory, ArtifactError> {
        let media_type = media_type(element)?;
        if let Some(template) = element.attr("template-type")
            && !template.eq_ignore_ascii_case("default")
        {
            return Err(unsupported(
                element,
                format!("template-type=\"{template}\" is not supported"),
                "default",
            ));
        }
        let mut format = None;
        let mut args = Vec::new();
        for child in &element.children {
            expect_synapse(child, "format, args")?;
            match child.name.as_str() {
                "format" if format.is_none() => format = Some(self.format(child, media_type)),
                "format" => return Err(invalid(child, "a payloadFactory has one <format>")),
                "args" => args.extend(arguments(child)?),
                _ => {
                    return Err(unknown(
                        child,
                        "is not supported in <payloadFactory>",
                        "format, args",
                    ));
                }
            }
        }
        let format = format.ok_or_else(|| invalid(element, "a payloadFactory needs a <format>"))?;
        Ok(PayloadFactory {
            media_type,
            format,
            args,
        })
    }

    /// XML formats are kept exactly as written; JSON and text formats are
    /// unescaped (they may be written with entities or in CDATA).
    pub(super) fn format(&mut self, element: &Element, media_type: MediaType) -> String {
        if let Some(key) = element.attr("key") {
            return match self.bundle.local_entries.get(key) {
                Some(entry) => self.content(entry),
                None => {
                    self.note_missing(element, "localEntry", key);
                    String::new()
                }
            };
        }
        if media_type == MediaType::Xml {
            self.document.inner_source(element).trim().to_string()
        } else {
            self.content(element)
        }
    }

    pub(super) fn filter(&mut self, element: &Element) -> Result<Filter, ArtifactError> {
        let condition = filter_condition(element)?;
        let branches = element
            .children
            .iter()
            .any(|child| is_synapse(child) && matches!(child.name.as_str(), "then" | "else"));
        if !branches {
            return Ok(Filter {
                condition,
                then: self.mediators(element)?,
                otherwise: Vec::new(),
            });
        }
        let mut then = None;
        let mut otherwise = None;
        for child in &element.children {
            expect_synapse(child, "then, else")?;
            let slot = match child.name.as_str() {
                "then" => &mut then,
                "else" => &mut otherwise,
                "description" => continue,
                _ => {
                    return Err(invalid(
                        child,
                        "a filter holds either <then>/<else> or mediators directly, not both",
                    ));
                }
            };
            if slot.is_some() {
                return Err(invalid(child, format!("a filter has one <{}>", child.name)));
            }
            *slot = Some(self.mediators(child)?);
        }
        Ok(Filter {
            condition,
            then: then.unwrap_or_default(),
            otherwise: otherwise.unwrap_or_default(),
        })
    }

    pub(super) fn send(&mut self, element: &Element) -> Result<Option<EndpointRef>, ArtifactError> {
        match single_endpoint_child(element)? {
            Some(endpoint) => Ok(Some(self.endpoint_ref(endpoint)?)),
            None => Ok(None),
        }
    }

    pub(super) fn call(&mut self, element: &Element) -> Result<EndpointRef, ArtifactError> {
        match single_endpoint_child(element)? {
            Some(endpoint) => self.endpoint_ref(endpoint),
            None => Err(invalid(element, "a call needs an <endpoint>")),
        }
    }

    // ---- endpoints --------------------------------------------------------
}

pub(super) fn log_mediator(element: &Element) -> Result<LogMediator, ArtifactError> {
    let level = match element
        .attr("level")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("simple") => LogLevel::Simple,
        Some("headers") => LogLevel::Headers,
        Some("full") => LogLevel::Full,
        Some("custom") => LogLevel::Custom,
        Some(other) => {
            return Err(invalid(
                element,
                format!("unknown log level `{other}` (use simple, headers, full or custom)"),
            ));
        }
    };
    let mut properties = Vec::new();
    for child in &element.children {
        expect_synapse(child, "property")?;
        if child.name != "property" {
            return Err(unknown(child, "is not supported in <log>", "property"));
        }
        let name = required(child, "name")?.to_string();
        let value = value_source(child)?.ok_or_else(|| {
            invalid(
                child,
                "a log property needs a value or an expression attribute",
            )
        })?;
        properties.push((name, value));
    }
    Ok(LogMediator {
        level,
        category: element.attr("category").unwrap_or("INFO").to_string(),
        separator: element.attr("separator").unwrap_or(",").to_string(),
        properties,
    })
}

pub(super) fn property_mediator(element: &Element) -> Result<PropertyMediator, ArtifactError> {
    let name = required(element, "name")?.to_string();
    let scope = match element
        .attr("scope")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("default") | Some("synapse") => PropertyScope::Default,
        Some("axis2") | Some("axis2-client") => PropertyScope::Axis2,
        Some("transport") => PropertyScope::Transport,
        Some(other) => {
            return Err(unsupported(
                element,
                format!("scope=\"{other}\" is not supported"),
                PROPERTY_SCOPES,
            ));
        }
    };
    Ok(PropertyMediator {
        name,
        scope,
        action: property_action(element)?,
    })
}

pub(super) fn header_mediator(element: &Element) -> Result<HeaderMediator, ArtifactError> {
    let name = required(element, "name")?.to_string();
    match element
        .attr("scope")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("default") | Some("transport") => {}
        Some(other) => {
            return Err(unsupported(
                element,
                format!("scope=\"{other}\" is not supported"),
                HEADER_SCOPES,
            ));
        }
    }
    Ok(HeaderMediator {
        name,
        action: property_action(element)?,
    })
}

/// `action="remove"`, or `value=` / `expression=` to set.
pub(super) fn property_action(element: &Element) -> Result<PropertyAction, ArtifactError> {
    match element.attr("action") {
        Some("remove") => return Ok(PropertyAction::Remove),
        None | Some("set") => {}
        Some(other) => {
            return Err(invalid(
                element,
                format!("unknown action `{other}` (use set or remove)"),
            ));
        }
    }
    let value = value_source(element)?.ok_or_else(|| {
        invalid(
            element,
            "needs a value or an expression attribute (or action=\"remove\")",
        )
    })?;
    Ok(PropertyAction::Set(value))
}

/// The `value=` or `expression=` of an element, if any.
pub(super) fn value_source(element: &Element) -> Result<Option<ValueSource>, ArtifactError> {
    match (element.attr("value"), element.attr("expression")) {
        (Some(_), Some(_)) => Err(invalid(
            element,
            "has both a value and an expression attribute",
        )),
        (Some(value), None) => Ok(Some(ValueSource::Literal(value.to_string()))),
        (None, Some(raw)) => Ok(Some(ValueSource::Expression(expression(
            element,
            "expression",
            raw,
        )?))),
        (None, None) => Ok(None),
    }
}

pub(super) fn expression(
    element: &Element,
    attribute: &str,
    raw: &str,
) -> Result<Expression, ArtifactError> {
    parse_expression(raw).map_err(|why| {
        unsupported(
            element,
            format!("{attribute}=\"{raw}\" is not supported: {why}"),
            SUPPORTED_EXPRESSIONS,
        )
    })
}

pub(super) fn media_type(element: &Element) -> Result<MediaType, ArtifactError> {
    match element
        .attr("media-type")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("xml") => Ok(MediaType::Xml),
        Some("json") => Ok(MediaType::Json),
        Some("text") => Ok(MediaType::Text),
        Some(other) => Err(unsupported(
            element,
            format!("media-type=\"{other}\" is not supported"),
            MEDIA_TYPES,
        )),
    }
}

pub(super) fn arguments(element: &Element) -> Result<Vec<ValueSource>, ArtifactError> {
    element
        .children
        .iter()
        .map(|child| {
            expect_synapse(child, "arg")?;
            if child.name != "arg" {
                return Err(unknown(child, "is not supported in <args>", "arg"));
            }
            argument(child)
        })
        .collect()
}

pub(super) fn argument(element: &Element) -> Result<ValueSource, ArtifactError> {
    match element.attr("evaluator") {
        None | Some("xml") | Some("json") => {}
        Some(other) => {
            return Err(invalid(
                element,
                format!("unknown evaluator `{other}` (use xml or json)"),
            ));
        }
    }
    value_source(element)?
        .ok_or_else(|| invalid(element, "an arg needs a value or an expression attribute"))
}

pub(super) fn filter_condition(element: &Element) -> Result<FilterCondition, ArtifactError> {
    match (
        element.attr("source"),
        element.attr("regex"),
        element.attr("xpath"),
    ) {
        (Some(source), Some(pattern), None) => {
            let source = expression(element, "source", source)?;
            // Synapse uses Matcher.matches(): the whole value must match.
            let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|error| {
                invalid(element, format!("regex=\"{pattern}\" is invalid: {error}"))
            })?;
            Ok(FilterCondition::Regex { source, regex })
        }
        (None, None, Some(xpath)) => {
            parse_condition(xpath)
                .map(FilterCondition::XPath)
                .map_err(|why| {
                    unsupported(
                        element,
                        format!("xpath=\"{xpath}\" is not supported: {why}"),
                        SUPPORTED_CONDITIONS,
                    )
                })
        }
        _ => Err(invalid(
            element,
            "a filter needs either source and regex, or xpath",
        )),
    }
}

/// The one `<endpoint>` child of a send or call, if any.
pub(super) fn single_endpoint_child(element: &Element) -> Result<Option<&Element>, ArtifactError> {
    let mut endpoint = None;
    for child in &element.children {
        expect_synapse(child, "endpoint")?;
        if child.name != "endpoint" {
            return Err(unknown(
                child,
                format!("is not supported in <{}>", element.name),
                "endpoint",
            ));
        }
        if endpoint.replace(child).is_some() {
            return Err(invalid(
                child,
                format!("a {} has one <endpoint>", element.name),
            ));
        }
    }
    Ok(endpoint)
}
