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
# minimum reason length, boilerplate vocabulary, personal limits. An import,
# not a rule: each reference reads the document directly.
import data.taxaddr.policy_data as cfg

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
# condition over type-checked values (see the permitting conditions). A reason is added
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
# Each body reads the input fields it needs and checks their types before any
# built-in, iteration or comparison uses them: regorus raises where OPA would
# make an expression undefined (a builtin given the wrong type, `some .. in` over
# a non-collection), so every builtin only ever sees a value of its type. The
# checks come first and both engines evaluate a body in order. Counts are whole
# numbers in [0, 10^9] and case bounds whole seconds in [0, 4.5e9] (see time);
# those checks are written out in each body rather than called as helpers, and
# fields are read in the body rather than through one helper rule per field:
# regorus spends microseconds on every rule or function it evaluates, far more
# than on an expression (docs/performance.md, session 7).

# 6103(i)(2)(A): disclosure goes to officers of a federal agency personally and
# directly engaged in the investigation; only the registered `requester` role
# asks (the role comes from the registered identity, never from the body).
default role_ok := false

role_ok if input.requester.role == "requester"

# A court has stayed disclosures: `orders` lists the stays in force whose scope
# covers this request (the service selects them from the applied orders). Only
# an empty list permits; a missing or mistyped list leaves it unestablished.
default not_stayed_ok := false

not_stayed_ok if {
	orders := input.orders
	is_array(orders)
	count(orders) == 0
}

# 6103(i)(2)(A): the proceeding or investigation must exist now: the case
# reference is in force, nbf <= now < exp, compared in whole nanoseconds (see
# time). An unreadable `now`, `exp` or `nbf` leaves the condition unestablished.
default not_expired_ok := false

not_expired_ok if {
	exp := input.case.exp
	is_number(exp)
	exp >= 0
	exp <= 4500000000
	floor(exp) == exp
	now_ns < exp * 1000000000
}

default started_ok := false

started_ok if {
	nbf := input.case.nbf
	is_number(nbf)
	nbf >= 0
	nbf <= 4500000000
	floor(nbf) == nbf
	now_ns >= nbf * 1000000000
}

# 6103(i)(2)(A): "pertaining to the enforcement of a specifically designated
# Federal criminal statute": the case is a criminal proceeding ...
default proceeding_ok := false

proceeding_ok if input.case.proceeding == "criminal"

# ... the request's statute is on the designation list of the data document
# (no civil removability provision, no Title 26 statute) ...
default statute_designated_ok := false

statute_designated_ok if {
	statute := input.request.statute
	is_string(statute)
	is_object(cfg.criminal_statutes)
	is_object(cfg.criminal_statutes[statute])
}

# ... and it is named on the case reference (6103(i)(2)(B): the statutory
# authority of the request).
default statute_on_case_ok := false

statute_on_case_ok if {
	statute := input.request.statute
	is_string(statute)
	case_statutes := input.case.statutes
	is_array(case_statutes)
	statute in case_statutes
}

# 6103(i)(2)(A): the requesting agency is the one the case names.
default agency_ok := false

agency_ok if {
	requester_agency := input.requester.agency
	is_string(requester_agency)
	requester_agency != ""
	case_agency := input.case.agency
	is_string(case_agency)
	requester_agency == case_agency
}

# 6103(i)(2)(A): the requester is personally named on the case.
default requester_on_case_ok := false

requester_on_case_ok if {
	requester_id := input.requester.id
	is_string(requester_id)
	requester_id != ""
	case_requesters := input.case.requesters
	is_array(case_requesters)
	requester_id in case_requesters
}

# 6103(i)(2)(B): the request names the taxpayer; subjects are compared as keyed
# pseudonyms (HMAC of the normalized TIN).
default subject_on_case_ok := false

subject_on_case_ok if {
	subject_ref := input.request.subject_ref
	is_string(subject_ref)
	subject_ref != ""
	case_subject_refs := input.case.subject_refs
	is_array(case_subject_refs)
	subject_ref in case_subject_refs
}

# 6103(i)(2)(B): the taxable periods: every requested period is on the case;
# asking for none is not covered.
default periods_covered_ok := false

periods_covered_ok if {
	requested_periods := input.request.tax_periods
	is_array(requested_periods)
	count(requested_periods) > 0
	case_periods := input.case.tax_periods
	is_array(case_periods)
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
	min_length := cfg.min_reason_length
	is_number(min_length)
	min_words := cfg.min_specific_words
	is_number(min_words)
	vocabulary := cfg.boilerplate_vocabulary
	is_object(vocabulary)
	reason := input.request.reason
	is_string(reason)
	reason_text := trim_space(reason)
	count(reason_text) >= min_length

	# The distinct words not in the vocabulary. The tokens are ASCII, so lowering
	# them joined by spaces and splitting again lowers each one (one call, not one
	# per token); no tokens join to "", which splits into [""], and `word != ""`
	# drops it (a token has 3 or more characters).
	tokens := regex.find_n(`[A-Za-z0-9]{3,}`, reason_text, -1)
	specific_words := {word |
		some word in split(lower(concat(" ", tokens)), " ")
		word != ""
		not vocabulary[word]
	}
	count(specific_words) >= min_words
}

# 6103(i)(2)(B)(i): the request states the taxpayer's address; the service
# passes only whether the supplied address was complete.
default address_ok := false

address_ok if input.request.address_complete == true

# 6103(i)(2) is per taxpayer, never bulk: the case reference carries a
# disclosure quota, and usage must be below it. Counts are whole numbers in
# [0, 10^9] (here and in the personal limits): both engines compare them exactly.
default quota_ok := false

quota_ok if {
	usage := input.case_usage.disclosures
	is_number(usage)
	usage >= 0
	usage <= 1000000000
	floor(usage) == usage
	max_disclosures := input.case.max_disclosures
	is_number(max_disclosures)
	max_disclosures >= 0
	max_disclosures <= 1000000000
	floor(max_disclosures) == max_disclosures
	usage < max_disclosures
}

# 6103(i)(2)(A): officers "personally and directly engaged" in the investigation.
# One official cannot be personally engaged in an unbounded number of cases or
# subjects, so the data document sets personal limits. The service counts
# without this request (open_cases: the other case references in force naming
# the requester that it has seen; subjects_24h: the other subjects disclosed to
# the requester in the last 24 hours), so "with this request counted" is n + 1,
# and the request is refused when n + 1 would exceed the limit: n < limit.
default caseload_ok := false

caseload_ok if {
	open_cases := input.requester_usage.open_cases
	is_number(open_cases)
	open_cases >= 0
	open_cases <= 1000000000
	floor(open_cases) == open_cases
	max_open_cases := cfg.max_open_cases_per_requester
	is_number(max_open_cases)
	max_open_cases >= 0
	max_open_cases <= 1000000000
	floor(max_open_cases) == max_open_cases
	open_cases < max_open_cases
}

default volume_ok := false

volume_ok if {
	subjects_24h := input.requester_usage.subjects_24h
	is_number(subjects_24h)
	subjects_24h >= 0
	subjects_24h <= 1000000000
	floor(subjects_24h) == subjects_24h
	max_subjects_per_day := cfg.max_subjects_per_requester_per_day
	is_number(max_subjects_per_day)
	max_subjects_per_day >= 0
	max_subjects_per_day <= 1000000000
	floor(max_subjects_per_day) == max_subjects_per_day
	subjects_24h < max_subjects_per_day
}

# --- time ------------------------------------------------------------------------

# The case window in whole nanoseconds, compared as integers. exp and nbf must
# be whole seconds in [0, 4.5e9] (before year 2113; checked in not_expired_ok and
# started_ok) and `now` is read to the whole second: then every value is an
# integer below 2^62 whose float form is exact as well, so both engines compare
# exactly (with whole-second exp and nbf, dropping now's fraction changes no
# comparison).

# time.parse_rfc3339_ns raises on malformed text in regorus (OPA would only
# make it undefined), and it overflows 64 bits in 2262 (OPA: undefined;
# regorus: error). So only a well-formed RFC 3339 date-time with a real
# calendar date in the years 1970-2099 reaches it, its fraction dropped:
# YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM). [0-9], never \d: \d is
# Unicode-wide in regorus and exceeds its regex size limit. Fixed-width digit
# strings compare like the numbers they spell. One regular expression both
# checks the form and captures its parts (every group always takes part in a
# match): [1] the date-time without the fraction, [2] year, [3] month, [4] day,
# [5] the offset; [1] + [5] is the text without its fraction.
now_ns := time.parse_rfc3339_ns(concat("", [parts[1], parts[5]])) if {
	is_string(input.now)
	[parts] := regex.find_all_string_submatch_n(
		`^((19[7-9][0-9]|20[0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])(?:\.[0-9]{1,9})?(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$`,
		input.now,
		1,
	)
	parts[4] <= month_days[parts[3]]
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
