# METADATA
# title: taxaddr disclosure decision
# description: >-
#   May one taxpayer address be disclosed under 26 U.S.C. 6103(i)(2)?
#   Deny by default, twice over: `reasons` collects a contract code for every
#   check that fails or cannot be established (missing field, wrong type,
#   unreadable timestamp, missing data document), and `allowed` is a separate,
#   positive statement of every condition; allow is true only when both agree.
#   The input never carries a TIN, a name or an address: subjects are keyed
#   pseudonyms and the address arrives only as the boolean address_complete.
package taxaddr.disclosure

import rego.v1

# The data document (policies/data.json): designated criminal statutes,
# minimum reason length, boilerplate vocabulary.
cfg := data.taxaddr.policy_data

# The result: {"allow": bool, "reasons": [code, ...]} in contract order.
decision := {"allow": allowed, "reasons": ordered_reasons}

# The policy's codes in the order of the contract's denial list; a request with
# several problems answers the first one.
code_order := [
	"role_forbidden",
	"case_expired",
	"case_not_yet_valid",
	"proceeding_not_criminal",
	"statute_not_criminal",
	"statute_not_on_case",
	"agency_mismatch",
	"requester_not_on_case",
	"subject_not_on_case",
	"tax_period_not_covered",
	"reason_insufficient",
	"address_incomplete",
	"case_quota_exhausted",
]

ordered_reasons := [code | some code in code_order; code in reasons]

default allowed := false

# The positive statement. Conditions are written inline (not as helper rules):
# regorus pays a few microseconds per rule lookup, and this runs per request.
allowed if {
	count(reasons) == 0
	input.requester.role == "requester"
	now_ns >= nbf_ns
	now_ns < exp_ns
	input.case.proceeding == "criminal"
	is_string(input.request.statute)
	cfg.criminal_statutes[input.request.statute]
	is_array(input.case.statutes)
	input.request.statute in input.case.statutes
	is_string(input.requester.agency)
	input.requester.agency != ""
	input.requester.agency == input.case.agency
	is_string(input.requester.id)
	input.requester.id != ""
	is_array(input.case.requesters)
	input.requester.id in input.case.requesters
	is_string(input.request.subject_ref)
	input.request.subject_ref != ""
	is_array(input.case.subject_refs)
	input.request.subject_ref in input.case.subject_refs
	is_array(input.request.tax_periods)
	count(input.request.tax_periods) > 0
	is_array(input.case.tax_periods)
	every period in input.request.tax_periods {
		is_string(period)
		period in input.case.tax_periods
	}
	is_string(input.request.reason)
	is_number(cfg.min_reason_length)
	count(trim_space(input.request.reason)) >= cfg.min_reason_length
	not only_boilerplate
	input.request.address_complete == true
	is_number(input.case_usage.disclosures)
	is_number(input.case.max_disclosures)
	input.case_usage.disclosures >= 0
	input.case_usage.disclosures < input.case.max_disclosures
}

# --- the denial codes ------------------------------------------------------------
# Each code has one rule per way its condition can fail. Type checks come
# before any builtin that would raise on a wrong type (regorus raises where OPA
# would only make the expression undefined).

# The role comes from the registered identity, never from the request body.
reasons contains "role_forbidden" if not input.requester.role == "requester"

# Case window nbf <= now < exp. An unreadable `now`, `exp` or `nbf` fails the
# comparison, so nothing shows the case to be in force.
reasons contains "case_expired" if not now_ns < exp_ns

reasons contains "case_not_yet_valid" if not now_ns >= nbf_ns

reasons contains "proceeding_not_criminal" if not input.case.proceeding == "criminal"

# The request's statute must be a designated federal criminal statute ...
reasons contains "statute_not_criminal" if not is_string(input.request.statute)

reasons contains "statute_not_criminal" if not cfg.criminal_statutes[input.request.statute]

# ... and named on the case reference.
reasons contains "statute_not_on_case" if not is_string(input.request.statute)

reasons contains "statute_not_on_case" if not is_array(input.case.statutes)

reasons contains "statute_not_on_case" if not input.request.statute in input.case.statutes

reasons contains "agency_mismatch" if not is_string(input.requester.agency)

reasons contains "agency_mismatch" if input.requester.agency == ""

reasons contains "agency_mismatch" if not input.requester.agency == input.case.agency

reasons contains "requester_not_on_case" if not is_string(input.requester.id)

reasons contains "requester_not_on_case" if input.requester.id == ""

reasons contains "requester_not_on_case" if not is_array(input.case.requesters)

reasons contains "requester_not_on_case" if not input.requester.id in input.case.requesters

# Subjects are compared as keyed pseudonyms (HMAC of the normalized TIN).
reasons contains "subject_not_on_case" if not is_string(input.request.subject_ref)

reasons contains "subject_not_on_case" if input.request.subject_ref == ""

reasons contains "subject_not_on_case" if not is_array(input.case.subject_refs)

reasons contains "subject_not_on_case" if not input.request.subject_ref in input.case.subject_refs

# Every requested period must be on the case; asking for none is not covered.
reasons contains "tax_period_not_covered" if not is_array(input.request.tax_periods)

reasons contains "tax_period_not_covered" if input.request.tax_periods == []

reasons contains "tax_period_not_covered" if not is_array(input.case.tax_periods)

# (`some .. in` raises on a non-collection in regorus, hence is_array first.)
reasons contains "tax_period_not_covered" if {
	is_array(input.request.tax_periods)
	some period in input.request.tax_periods
	not is_string(period)
}

reasons contains "tax_period_not_covered" if {
	is_array(input.request.tax_periods)
	some period in input.request.tax_periods
	not period in input.case.tax_periods
}

# 6103(i)(2)(B): the specific reasons why the disclosure is relevant. At least
# min_reason_length characters after trimming, and not only boilerplate.
reasons contains "reason_insufficient" if not is_string(input.request.reason)

reasons contains "reason_insufficient" if not is_number(cfg.min_reason_length)

reasons contains "reason_insufficient" if {
	is_string(input.request.reason)
	count(trim_space(input.request.reason)) < cfg.min_reason_length
}

reasons contains "reason_insufficient" if only_boilerplate

# 6103(i)(2)(B) also requires the taxpayer's name and address in the request;
# the service passes only whether the supplied address was complete.
reasons contains "address_incomplete" if not input.request.address_complete == true

reasons contains "case_quota_exhausted" if not is_number(input.case_usage.disclosures)

reasons contains "case_quota_exhausted" if not is_number(input.case.max_disclosures)

reasons contains "case_quota_exhausted" if {
	is_number(input.case_usage.disclosures)
	input.case_usage.disclosures < 0
}

reasons contains "case_quota_exhausted" if {
	is_number(input.case_usage.disclosures)
	is_number(input.case.max_disclosures)
	input.case_usage.disclosures >= input.case.max_disclosures
}

# --- the reason's words --------------------------------------------------------------

# A reason is only boilerplate when every word of it (lower-cased, split at
# whitespace and punctuation) is in the boilerplate vocabulary: the words of
# the boilerplate_reasons phrases plus filler words. This catches a bare stock
# phrase and also stock phrases repeated or chained to pass the length limit.
# A reason with no word at all (only punctuation) is boilerplate too.
only_boilerplate if {
	is_string(input.request.reason)
	is_array(cfg.boilerplate_vocabulary)
	every word in reason_words {
		word in cfg.boilerplate_vocabulary
	}
}

reason_words := [word |
	some word in split(strings.replace_n(separators, lower(input.request.reason)), " ")
	word != ""
] if is_string(input.request.reason)

separators := {
	"\t": " ", "\n": " ", "\r": " ", ".": " ", ",": " ", ";": " ", ":": " ",
	"!": " ", "?": " ", "(": " ", ")": " ", "[": " ", "]": " ", "/": " ",
	"-": " ", "_": " ", "\"": " ", "'": " ", "`": " ", "*": " ", "&": " ",
}

# --- time ------------------------------------------------------------------------

exp_ns := input.case.exp * 1000000000 if is_number(input.case.exp)

nbf_ns := input.case.nbf * 1000000000 if is_number(input.case.nbf)

# time.parse_rfc3339_ns raises on malformed text in regorus (OPA would only
# make it undefined), so only a well-formed RFC 3339 date-time with a real
# calendar date reaches it: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM).
# [0-9], never \d: \d is Unicode-wide in regorus and exceeds its regex size
# limit. Fixed-width digit strings compare like the numbers they spell.
now_ns := time.parse_rfc3339_ns(input.now) if {
	is_string(input.now)
	regex.match(
		`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`,
		input.now,
	)
	substring(input.now, 8, 2) <= month_days[substring(input.now, 5, 2)]
	not invalid_leap_day
}

month_days := {
	"01": "31", "02": "29", "03": "31", "04": "30", "05": "31", "06": "30",
	"07": "31", "08": "31", "09": "30", "10": "31", "11": "30", "12": "31",
}

# Every helper guards its own types: regorus may evaluate a rule outside the
# body that mentions it (e.g. under `with`), where a builtin type error raises.
invalid_leap_day if {
	is_string(input.now)
	substring(input.now, 4, 6) == "-02-29"
	not leap_year(year_number(substring(input.now, 0, 4)))
}

leap_year(y) if {
	y % 4 == 0
	y % 100 != 0
}

leap_year(y) if y % 400 == 0

# to_number rejects leading zeros in regorus, so strip them first.
year_number(year) := 0 if trim_left(year, "0") == ""

year_number(year) := to_number(trim_left(year, "0")) if trim_left(year, "0") != ""
