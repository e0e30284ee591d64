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
	"disclosure_stayed",
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
	"requester_caseload_exceeded",
	"requester_volume_exceeded",
]

ordered_reasons := [code | some code in code_order; code in reasons]

# Deny by default, structurally. Each check is one boolean rule "<x>_ok" with
# `default := false`, made true only by a body that establishes the permitting
# condition over type-checked values (the typed views below). A reason is added
# when its rule is false, so an input that is missing, mistyped or unreadable
# can never drop a reason: `not <rule>` is only ever applied to such a rule,
# never to an expression that could be undefined (OPA hoists references out of
# `not`) or raise a built-in error (regorus raises where OPA is undefined).
# allow needs every permitting condition AND an empty reasons set.
default allowed := false

allowed if {
	count(reasons) == 0
	role_ok
	not_stayed_ok
	not_expired_ok
	started_ok
	proceeding_ok
	statute_designated_ok
	statute_on_case_ok
	agency_ok
	requester_on_case_ok
	subject_on_case_ok
	periods_covered_ok
	reason_specific_ok
	address_ok
	quota_ok
	caseload_ok
	volume_ok
}

# --- the denial codes ------------------------------------------------------------

reasons contains "role_forbidden" if not role_ok

reasons contains "disclosure_stayed" if not not_stayed_ok

reasons contains "case_expired" if not not_expired_ok

reasons contains "case_not_yet_valid" if not started_ok

reasons contains "proceeding_not_criminal" if not proceeding_ok

reasons contains "statute_not_criminal" if not statute_designated_ok

reasons contains "statute_not_on_case" if not statute_on_case_ok

reasons contains "agency_mismatch" if not agency_ok

reasons contains "requester_not_on_case" if not requester_on_case_ok

reasons contains "subject_not_on_case" if not subject_on_case_ok

reasons contains "tax_period_not_covered" if not periods_covered_ok

reasons contains "reason_insufficient" if not reason_specific_ok

reasons contains "address_incomplete" if not address_ok

reasons contains "case_quota_exhausted" if not quota_ok

reasons contains "requester_caseload_exceeded" if not caseload_ok

reasons contains "requester_volume_exceeded" if not volume_ok

# --- permitting conditions -----------------------------------------------------------

# 6103(i)(2)(A): disclosure goes to officers of a federal agency personally and
# directly engaged in the investigation; only the registered `requester` role
# asks (the role comes from the registered identity, never from the body).
default role_ok := false

role_ok if input.requester.role == "requester"

# A court has stayed disclosures: `orders` lists the stays in force whose scope
# covers this request (the service selects them from the applied orders). Only
# an empty list permits; a missing or mistyped list leaves it unestablished.
default not_stayed_ok := false

not_stayed_ok if count(stays) == 0

# 6103(i)(2)(A): the proceeding or investigation must exist now: the case
# reference is in force, nbf <= now < exp. An unreadable `now`, `exp` or `nbf`
# leaves the condition unestablished.
default not_expired_ok := false

not_expired_ok if now_ns < exp_ns

default started_ok := false

started_ok if now_ns >= nbf_ns

# 6103(i)(2)(A): "pertaining to the enforcement of a specifically designated
# Federal criminal statute": the case is a criminal proceeding ...
default proceeding_ok := false

proceeding_ok if input.case.proceeding == "criminal"

# ... the request's statute is on the designation list of the data document
# (no civil removability provision, no Title 26 statute) ...
default statute_designated_ok := false

statute_designated_ok if {
	is_object(cfg.criminal_statutes)
	is_object(cfg.criminal_statutes[statute])
}

# ... and it is named on the case reference (6103(i)(2)(B): the statutory
# authority of the request).
default statute_on_case_ok := false

statute_on_case_ok if statute in case_statutes

# 6103(i)(2)(A): the requesting agency is the one the case names.
default agency_ok := false

agency_ok if {
	case_agency := input.case.agency
	is_string(case_agency)
	requester_agency == case_agency
}

# 6103(i)(2)(A): the requester is personally named on the case.
default requester_on_case_ok := false

requester_on_case_ok if requester_id in case_requesters

# 6103(i)(2)(B): the request names the taxpayer; subjects are compared as keyed
# pseudonyms (HMAC of the normalized TIN).
default subject_on_case_ok := false

subject_on_case_ok if subject_ref in case_subject_refs

# 6103(i)(2)(B): the taxable periods: every requested period is on the case;
# asking for none is not covered.
default periods_covered_ok := false

periods_covered_ok if {
	every period in requested_periods {
		is_string(period)
		period in case_periods
	}
}

# 6103(i)(2)(B): the specific reasons why the disclosure is relevant: at least
# min_reason_length characters after trimming, and at least
# min_specific_words distinct words (ASCII letters and digits, 3 or more
# characters, compared case-insensitively) that are neither words of the
# boilerplate_reasons phrases nor filler words. Stock phrases, repeated,
# chained or padded with short tokens, never pass.
default reason_specific_ok := false

reason_specific_ok if {
	is_number(cfg.min_reason_length)
	is_number(cfg.min_specific_words)
	is_object(cfg.boilerplate_vocabulary)
	count(reason_text) >= cfg.min_reason_length
	count(specific_words) >= cfg.min_specific_words
}

specific_words contains word if {
	is_object(cfg.boilerplate_vocabulary)
	some token in regex.find_n(`[A-Za-z0-9]{3,}`, reason_text, -1)
	word := lower(token)
	not cfg.boilerplate_vocabulary[word]
}

# 6103(i)(2)(B)(i): the request states the taxpayer's address; the service
# passes only whether the supplied address was complete.
default address_ok := false

address_ok if input.request.address_complete == true

# 6103(i)(2) is per taxpayer, never bulk: the case reference carries a
# disclosure quota, and usage must be below it.
default quota_ok := false

quota_ok if usage < max_disclosures

# 6103(i)(2)(A): officers "personally and directly engaged" in the investigation.
# One official cannot be personally engaged in an unbounded number of cases or
# subjects, so the data document sets personal limits. The service counts
# without this request (open_cases: the other case references in force naming
# the requester that it has seen; subjects_24h: the other subjects disclosed to
# the requester in the last 24 hours), so "with this request counted" is n + 1,
# and the request is refused when n + 1 would exceed the limit: n < limit.
default caseload_ok := false

caseload_ok if open_cases < max_open_cases

default volume_ok := false

volume_ok if subjects_24h < max_subjects_per_day

# --- typed views of the input: undefined unless present with the right type --------
# (regorus raises where OPA would make an expression undefined, e.g. a builtin
# given the wrong type, or `some .. in` over a non-collection; so builtins and
# iterations only ever see these views.)

stays := x if {
	x := input.orders
	is_array(x)
}

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

# Counts are whole numbers in [0, 10^9]: both engines compare them exactly.
usage := x if {
	x := input.case_usage.disclosures
	whole_count(x)
}

max_disclosures := x if {
	x := input.case.max_disclosures
	whole_count(x)
}

open_cases := x if {
	x := input.requester_usage.open_cases
	whole_count(x)
}

subjects_24h := x if {
	x := input.requester_usage.subjects_24h
	whole_count(x)
}

max_open_cases := x if {
	x := cfg.max_open_cases_per_requester
	whole_count(x)
}

max_subjects_per_day := x if {
	x := cfg.max_subjects_per_requester_per_day
	whole_count(x)
}

whole_count(x) if {
	is_number(x)
	x >= 0
	x <= 1000000000
	floor(x) == x
}

# --- time ------------------------------------------------------------------------

# The case window in whole nanoseconds, compared as integers. exp and nbf must
# be whole seconds in [0, 4.5e9] (before year 2113) and `now` is read to the
# whole second: then every value is an integer below 2^62 whose float form is
# exact as well, so both engines compare exactly (with whole-second exp and
# nbf, dropping now's fraction changes no comparison).
exp_ns := input.case.exp * 1000000000 if whole_seconds(input.case.exp)

nbf_ns := input.case.nbf * 1000000000 if whole_seconds(input.case.nbf)

whole_seconds(x) if {
	is_number(x)
	x >= 0
	x <= 4500000000
	floor(x) == x
}

# time.parse_rfc3339_ns raises on malformed text in regorus (OPA would only
# make it undefined), and it overflows 64 bits in 2262 (OPA: undefined;
# regorus: error). So only a well-formed RFC 3339 date-time with a real
# calendar date in the years 1970-2099 reaches it, its fraction dropped:
# YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM). [0-9], never \d: \d is
# Unicode-wide in regorus and exceeds its regex size limit. Fixed-width digit
# strings compare like the numbers they spell.
now_ns := time.parse_rfc3339_ns(regex.replace(input.now, `\.[0-9]+`, "")) if {
	is_string(input.now)
	regex.match(
		`^(19[7-9][0-9]|20[0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`,
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
