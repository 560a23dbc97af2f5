//! The `signed` template of the `hmac` scheme: literal text around `{body}`, `{timestamp}`
//! and `{id}`, fed to the MAC piece by piece so the body is never copied.

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Timestamp,
    Id,
    Body,
}

/// A parsed `signed` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template(Vec<Part>);

/// The values a template's placeholders stand for, as received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    /// The timestamp header's text.
    pub(crate) timestamp: Option<&'a str>,
    /// The id header's text.
    pub(crate) id: Option<&'a str>,
    /// The raw body.
    pub(crate) body: &'a [u8],
}

impl Template {
    /// Parses a template; it must hold `{body}` exactly once, or the body is not protected.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("signed: `{{` without `}}` in {text:?}"))?;
            parts.push(placeholder(&after[..close])?);
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }

        let bodies = parts.iter().filter(|p| **p == Part::Body).count();
        if bodies != 1 {
            return Err(format!(
                "signed: must contain {{body}} exactly once, in {text:?}"
            ));
        }
        Ok(Self(parts))
    }

    /// Whether the template signs a timestamp.
    pub(crate) fn has_timestamp(&self) -> bool {
        self.0.contains(&Part::Timestamp)
    }

    /// Whether the template signs a delivery id.
    pub(crate) fn has_id(&self) -> bool {
        self.0.contains(&Part::Id)
    }

    /// The byte pieces of the signed message for these fields, in order.
    ///
    /// A placeholder whose field is absent contributes nothing; the builder makes sure every
    /// placeholder has a header to read from.
    pub(crate) fn parts<'a>(&'a self, fields: &Fields<'a>) -> Vec<&'a [u8]> {
        self.0
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_bytes(),
                Part::Timestamp => fields.timestamp.unwrap_or_default().as_bytes(),
                Part::Id => fields.id.unwrap_or_default().as_bytes(),
                Part::Body => fields.body,
            })
            .collect()
    }
}

fn placeholder(name: &str) -> Result<Part, String> {
    match name {
        "body" => Ok(Part::Body),
        "timestamp" => Ok(Part::Timestamp),
        "id" => Ok(Part::Id),
        other => Err(format!(
            "signed: unknown placeholder {{{other}}}; use {{body}}, {{timestamp}} or {{id}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(template: &str, fields: &Fields<'_>) -> Vec<u8> {
        Template::parse(template).unwrap().parts(fields).concat()
    }

    #[test]
    fn placeholders_are_filled_from_the_request() {
        let fields = Fields {
            timestamp: Some("17"),
            id: Some("m1"),
            body: b"{}",
        };
        assert_eq!(joined("v0:{timestamp}:{body}", &fields), b"v0:17:{}");
        assert_eq!(joined("{id}.{timestamp}.{body}", &fields), b"m1.17.{}");
        assert_eq!(joined("{body}", &fields), b"{}");
    }

    #[test]
    fn the_body_must_be_signed_exactly_once() {
        assert!(Template::parse("{timestamp}").is_err());
        assert!(Template::parse("{body}{body}").is_err());
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_refused() {
        let err = Template::parse("{ts}.{body}").unwrap_err();
        assert!(err.contains("{ts}"), "{err}");
        assert!(Template::parse("{body").is_err());
    }

    #[test]
    fn which_fields_are_signed_is_known() {
        let template = Template::parse("{timestamp}.{body}").unwrap();
        assert!(template.has_timestamp() && !template.has_id());
    }
}
