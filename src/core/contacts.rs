//! The people to call: the response team's roles and the escalation contacts of the source
//! document, with the names, phones and e-mails a config file gives them.

use serde::Deserialize;

/// A person to call: a response-team role or an escalation contact.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// A team role (incident_commander, technical_lead, database_admin, security_lead,
    /// communications_lead, documentation_lead) or an escalation (cto, ceo, legal, compliance).
    pub role: String,
    /// Who.
    pub name: String,
    /// Phone number.
    #[serde(default)]
    pub phone: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
}

/// The escalation contacts of the source document, after the response team.
pub const ESCALATIONS: [(&str, &str); 4] =
    [("cto", "CTO"), ("ceo", "CEO"), ("legal", "Legal"), ("compliance", "Compliance")];
