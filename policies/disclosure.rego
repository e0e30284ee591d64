# METADATA
# title: taxaddr disclosure decision
# description: >-
#   May one taxpayer address be disclosed under 26 U.S.C. 6103(i)(2)?
#   Deny by default: `reasons` collects a contract code for every check that
#   fails or cannot be established (missing field, wrong type, unreadable
#   timestamp, missing data document); allow is true only when it is empty.
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

# Deny by default: allow only when no check produced a reason. Each check
# below is "not <the condition that permits>", and every permitting condition
# is written over the typed views further down, which are undefined when a
# field is missing or of the wrong type; so a check that cannot be established
# yields its code.
default allowed := false

allowed if count(reasons) == 0

# --- the denial codes ------------------------------------------------------------

# The role comes from the registered identity, never from the request body.
reasons contains "role_forbidden" if not input.requester.role == "requester"

# Case window nbf <= now < exp. An unreadable `now`, `exp` or `nbf` fails the
# comparison, so nothing shows the case to be in force.
reasons contains "case_expired" if not now_ns < exp_ns

reasons contains "case_not_yet_valid" if not now_ns >= nbf_ns

reasons contains "proceeding_not_criminal" if not input.case.proceeding == "criminal"

# The request's statute must be a designated federal criminal statute ...
reasons contains "statute_not_criminal" if not cfg.criminal_statutes[statute]

# ... and named on the case reference.
reasons contains "statute_not_on_case" if not statute in case_statutes

reasons contains "agency_mismatch" if not requester_agency == input.case.agency

reasons contains "requester_not_on_case" if not requester_id in case_requesters

# Subjects are compared as keyed pseudonyms (HMAC of the normalized TIN).
reasons contains "subject_not_on_case" if not subject_ref in case_subject_refs

reasons contains "tax_period_not_covered" if not periods_covered

reasons contains "reason_insufficient" if not reason_specific

# 6103(i)(2)(B) also requires the taxpayer's name and address in the request;
# the service passes only whether the supplied address was complete.
reasons contains "address_incomplete" if not input.request.address_complete == true

reasons contains "case_quota_exhausted" if not usage < max_disclosures

# --- permitting conditions -----------------------------------------------------------

# Every requested period is on the case; asking for none is not covered.
periods_covered if {
	is_array(requested_periods)
	every period in requested_periods {
		is_string(period)
		period in case_periods
	}
}

# 6103(i)(2)(B): the specific reasons why the disclosure is relevant: at least
# min_reason_length characters after trimming, and not only boilerplate.
reason_specific if {
	is_number(cfg.min_reason_length)
	count(reason_text) >= cfg.min_reason_length
	not only_boilerplate
}

# A reason is only boilerplate when every word of it (runs of ASCII letters and
# digits, lower-cased) is in the boilerplate vocabulary: the words of the
# boilerplate_reasons phrases plus filler words. This catches a bare stock
# phrase and stock phrases repeated or chained to pass the length limit. A
# reason with no such word at all is boilerplate too.
only_boilerplate if {
	is_object(cfg.boilerplate_vocabulary)
	every word in regex.find_n(`[a-z0-9]+`, lower(reason_text), -1) {
		cfg.boilerplate_vocabulary[word]
	}
}

# --- typed views of the input: undefined unless present with the right type --------
# (regorus raises where OPA would make an expression undefined, e.g. a builtin
# given the wrong type, or `some .. in` over a non-collection; so builtins and
# iterations only ever see these views.)

requester_id := x if {
	x := input.requester.id
	is_string(x)
	x != ""
}

requester_agency := x if {
	x := input.requester.agency
	is_string(x)
	x != ""
}

statute := x if {
	x := input.request.statute
	is_string(x)
}

subject_ref := x if {
	x := input.request.subject_ref
	is_string(x)
	x != ""
}

requested_periods := x if {
	x := input.request.tax_periods
	is_array(x)
	count(x) > 0
}

reason_text := trim_space(x) if {
	x := input.request.reason
	is_string(x)
}

case_statutes := x if {
	x := input.case.statutes
	is_array(x)
}

case_requesters := x if {
	x := input.case.requesters
	is_array(x)
}

case_subject_refs := x if {
	x := input.case.subject_refs
	is_array(x)
}

case_periods := x if {
	x := input.case.tax_periods
	is_array(x)
}

usage := x if {
	x := input.case_usage.disclosures
	is_number(x)
	x >= 0
}

max_disclosures := x if {
	x := input.case.max_disclosures
	is_number(x)
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
