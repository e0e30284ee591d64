# Unit tests for taxaddr.disclosure in `opa test` format. Every rule is tested
# both ways: the valid request is allowed, and each change denies with exactly
# the expected code(s). Run with `opa test policies/` or, here, under regorus
# by tests/policy/test_rego_units.py.
package taxaddr.disclosure_test

import rego.v1

import data.taxaddr.disclosure

# 2026-11-24T21:00:00Z is 1795554000 s; the case window is [1795000000, 1800000000).
valid := {
	"now": "2026-11-24T21:00:00Z",
	"requester": {"id": "hsi-agent-0042", "agency": "ICE-HSI", "role": "requester"},
	"case": {
		"iss": "dev-court",
		"jti": "case-jti-1",
		"iat": 1795000000,
		"nbf": 1795000000,
		"exp": 1800000000,
		"number": "1:26-cr-00123",
		"court": "D.D.C.",
		"proceeding": "criminal",
		"statutes": ["8 U.S.C. 1253(a)(1)", "8 U.S.C. 1227"],
		"agency": "ICE-HSI",
		"requesters": ["hsi-agent-0042", "hsi-agent-0043"],
		"subject_refs": ["aa11", "bb22"],
		"tax_periods": ["2023", "2024"],
		"max_disclosures": 5,
	},
	"case_usage": {"disclosures": 0},
	"requester_usage": {"open_cases": 0, "subjects_24h": 0},
	"orders": [],
	"request": {
		"subject_ref": "aa11",
		"address_complete": true,
		"tax_periods": ["2024"],
		"statute": "8 U.S.C. 1253(a)(1)",
		"reason": "Defendant charged with failure to depart; address needed to serve the arrest warrant.",
	},
}

all_codes := [
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

with_now(now) := object.union(valid, {"now": now})

with_requester(patch) := object.union(valid, {"requester": object.union(valid.requester, patch)})

with_case(patch) := object.union(valid, {"case": object.union(valid.case, patch)})

with_usage(n) := object.union(valid, {"case_usage": {"disclosures": n}})

with_requester_usage(patch) := object.union(
	valid,
	{"requester_usage": object.union(valid.requester_usage, patch)},
)

with_request(patch) := object.union(valid, {"request": object.union(valid.request, patch)})

allowed(inp) if {
	d := disclosure.decision with input as inp
	d.allow == true
	d.reasons == []
}

denied(inp, codes) if {
	d := disclosure.decision with input as inp
	d.allow == false
	d.reasons == codes
}

# --- allow ---------------------------------------------------------------------------

test_valid_request_is_allowed if allowed(valid)

test_every_designated_statute_can_be_allowed if {
	every statute in object.keys(data.taxaddr.policy_data.criminal_statutes) {
		allowed(object.union(
			with_case({"statutes": [statute]}),
			{"request": object.union(valid.request, {"statute": statute})},
		))
	}
}

# --- role_forbidden ------------------------------------------------------------------

test_oversight_role_is_forbidden if denied(with_requester({"role": "oversight"}), ["role_forbidden"])

test_admin_role_is_forbidden if denied(with_requester({"role": "admin"}), ["role_forbidden"])

test_missing_role_is_forbidden if {
	denied(json.remove(valid, ["requester/role"]), ["role_forbidden"])
}

# --- case window -----------------------------------------------------------------

test_now_at_exp_is_expired if denied(with_case({"exp": 1795554000}), ["case_expired"])

test_now_just_before_exp_is_allowed if allowed(with_case({"exp": 1795554001}))

test_now_after_exp_is_expired if denied(with_now("2027-06-01T00:00:00Z"), ["case_expired"])

test_now_before_nbf_is_not_yet_valid if denied(with_case({"nbf": 1795554001}), ["case_not_yet_valid"])

test_now_at_nbf_is_allowed if allowed(with_case({"nbf": 1795554000}))

test_offset_time_is_read if {
	allowed(with_now("2026-11-24T23:00:00+02:00"))
	denied(
		object.union(with_now("2026-11-24T23:00:00-02:00"), {"case": object.union(valid.case, {"exp": 1795554001})}),
		["case_expired"],
	)
}

test_fractional_seconds_are_read if allowed(with_now("2026-11-24T21:00:00.123456Z"))

window_unknown := ["case_expired", "case_not_yet_valid"]

test_unreadable_now_denies if {
	denied(with_now("yesterday"), window_unknown)
	denied(with_now(1795554000), window_unknown)
	denied(with_now("2026-11-24 21:00:00Z"), window_unknown)
	denied(with_now("2026-11-24T21:00:00"), window_unknown)
	denied(with_now("2026-13-24T21:00:00Z"), window_unknown)
	denied(with_now("2026-11-31T21:00:00Z"), window_unknown)
	denied(with_now("2026-02-29T21:00:00Z"), window_unknown)
	denied(with_now("2026-11-24T24:00:00Z"), window_unknown)
	denied(json.remove(valid, ["now"]), window_unknown)
}

test_leap_days_are_calendar_checked if {
	disclosure.now_ns == 1709164800000000000 with input as {"now": "2024-02-29T00:00:00Z"}
	disclosure.now_ns == 951782400000000000 with input as {"now": "2000-02-29T00:00:00Z"}
	not disclosure.now_ns with input as {"now": "1900-02-29T00:00:00Z"}
	not disclosure.now_ns with input as {"now": "2025-02-29T00:00:00Z"}
}

# now_ns keeps the offset and drops only the fraction (one regular expression
# captures the date-time and the offset around it).
test_now_drops_the_fraction_and_keeps_the_offset if {
	disclosure.now_ns == 1795554000000000000 with input as {"now": "2026-11-24T22:30:00.999+01:30"}
	disclosure.now_ns == 1795554000000000000 with input as {"now": "2026-11-24T19:00:00.5-02:00"}
	disclosure.now_ns == 1795554000000000000 with input as {"now": "2026-11-24T21:00:00.123456789Z"}
	not disclosure.now_ns with input as {"now": "2026-11-24T21:00:00.1234567890Z"}
	not disclosure.now_ns with input as {"now": "2026-11-24T21:00:00.Z"}
	not disclosure.now_ns with input as {"now": "2026-11-24T21:00:00.5.5Z"}
	not disclosure.now_ns with input as {"now": "2026-11-24T21:00:00Z\n"}
}

test_unreadable_case_bounds_deny if {
	denied(with_case({"exp": "1800000000"}), ["case_expired"])
	denied(with_case({"nbf": null}), ["case_not_yet_valid"])
}

# --- proceeding_not_criminal ---------------------------------------------------------

test_civil_proceeding_is_denied if denied(with_case({"proceeding": "civil"}), ["proceeding_not_criminal"])

test_missing_proceeding_is_denied if {
	denied(json.remove(valid, ["case/proceeding"]), ["proceeding_not_criminal"])
}

test_proceeding_is_case_sensitive if denied(with_case({"proceeding": "Criminal"}), ["proceeding_not_criminal"])

# --- statute_not_criminal / statute_not_on_case --------------------------------------

test_civil_removability_statute_is_not_criminal if {
	# 8 U.S.C. 1227 is on this case, but it is a civil removability provision.
	denied(with_request({"statute": "8 U.S.C. 1227"}), ["statute_not_criminal"])
}

test_title_26_statute_is_not_criminal if {
	denied(
		object.union(with_case({"statutes": ["26 U.S.C. 7201"]}), {"request": object.union(valid.request, {"statute": "26 U.S.C. 7201"})}),
		["statute_not_criminal"],
	)
}

test_designated_statute_not_on_case_is_denied if {
	denied(with_request({"statute": "8 U.S.C. 1326"}), ["statute_not_on_case"])
}

test_unknown_statute_off_case_gives_both_codes if {
	denied(with_request({"statute": "8 U.S.C. 1231"}), ["statute_not_criminal", "statute_not_on_case"])
}

test_statute_must_be_a_string if {
	denied(with_request({"statute": ["8 U.S.C. 1253(a)(1)"]}), ["statute_not_criminal", "statute_not_on_case"])
	denied(json.remove(valid, ["request/statute"]), ["statute_not_criminal", "statute_not_on_case"])
}

test_case_statutes_must_be_a_list if {
	denied(with_case({"statutes": {"a": "8 U.S.C. 1253(a)(1)"}}), ["statute_not_on_case"])
}

# (Replaced by a non-object: OPA merges an object given with `with` into the
# base document's object at that path instead of replacing it.)
test_missing_statute_list_denies if {
	denied(valid, ["statute_not_criminal"]) with data.taxaddr.policy_data.criminal_statutes as []
	denied(valid, ["statute_not_criminal"]) with data.taxaddr.policy_data.criminal_statutes as null
}

# --- agency_mismatch -----------------------------------------------------------------

test_other_agency_is_denied if denied(with_requester({"agency": "CBP"}), ["agency_mismatch"])

test_empty_agencies_do_not_match if {
	denied(object.union(with_requester({"agency": ""}), {"case": object.union(valid.case, {"agency": ""})}), ["agency_mismatch"])
}

test_missing_agency_is_denied if denied(json.remove(valid, ["case/agency"]), ["agency_mismatch"])

test_agency_must_be_a_string if {
	denied(object.union(with_requester({"agency": 7}), {"case": object.union(valid.case, {"agency": 7})}), ["agency_mismatch"])
}

# --- requester_not_on_case -----------------------------------------------------------

test_requester_not_listed_is_denied if {
	denied(with_requester({"id": "hsi-agent-9999"}), ["requester_not_on_case"])
}

test_requester_id_must_be_a_nonempty_string if {
	denied(object.union(with_requester({"id": ""}), {"case": object.union(valid.case, {"requesters": [""]})}), ["requester_not_on_case"])
	denied(json.remove(valid, ["requester/id"]), ["requester_not_on_case"])
}

test_case_requesters_must_be_a_list if {
	denied(with_case({"requesters": "hsi-agent-0042"}), ["requester_not_on_case"])
}

# --- subject_not_on_case -------------------------------------------------------------

test_subject_not_listed_is_denied if denied(with_request({"subject_ref": "cc33"}), ["subject_not_on_case"])

test_subject_ref_must_be_a_nonempty_string if {
	denied(object.union(with_request({"subject_ref": ""}), {"case": object.union(valid.case, {"subject_refs": [""]})}), ["subject_not_on_case"])
	denied(with_request({"subject_ref": ["aa11"]}), ["subject_not_on_case"])
}

test_case_subject_refs_must_be_a_list if {
	denied(with_case({"subject_refs": {"aa11": true}}), ["subject_not_on_case"])
}

# --- tax_period_not_covered ----------------------------------------------------------

test_uncovered_period_is_denied if denied(with_request({"tax_periods": ["2022"]}), ["tax_period_not_covered"])

test_every_period_must_be_covered if {
	allowed(with_request({"tax_periods": ["2023", "2024"]}))
	denied(with_request({"tax_periods": ["2024", "2025"]}), ["tax_period_not_covered"])
}

test_no_period_is_not_covered if denied(with_request({"tax_periods": []}), ["tax_period_not_covered"])

test_periods_must_be_lists_of_strings if {
	denied(with_request({"tax_periods": "2024"}), ["tax_period_not_covered"])
	denied(with_request({"tax_periods": [2024]}), ["tax_period_not_covered"])
	denied(with_case({"tax_periods": "2023 2024"}), ["tax_period_not_covered"])
}

# --- reason_insufficient -------------------------------------------------------------

test_reason_of_40_characters_is_enough if {
	allowed(with_request({"reason": "Defendant charged under 8 USC 1326 here."}))
}

test_reason_of_39_characters_is_insufficient if {
	denied(with_request({"reason": "Defendant charged under 8 USC 1326 here"}), ["reason_insufficient"])
}

test_reason_length_counts_after_trimming if {
	denied(with_request({"reason": "   Defendant charged under 8 USC 1326 here\n\t  "}), ["reason_insufficient"])
}

test_bare_boilerplate_is_insufficient if {
	denied(with_request({"reason": "immigration enforcement"}), ["reason_insufficient"])
	denied(with_request({"reason": "Removal proceedings."}), ["reason_insufficient"])
}

test_padded_boilerplate_is_insufficient if {
	denied(with_request({"reason": "Immigration Enforcement; removal proceedings, immigration enforcement!"}), ["reason_insufficient"])
	denied(with_request({"reason": "IMMIGRATION   ENFORCEMENT and REMOVAL PROCEEDINGS for the removal order"}), ["reason_insufficient"])
}

test_punctuation_only_reason_is_insufficient if {
	denied(with_request({"reason": "........................................................"}), ["reason_insufficient"])
}

test_boilerplate_with_specific_facts_is_enough if {
	allowed(with_request({"reason": "Immigration enforcement: defendant in 1:26-cr-00123 must be served an arrest warrant"}))
}

test_reason_must_be_a_string if {
	denied(with_request({"reason": ["Defendant charged with failure to depart; address needed to serve the arrest warrant."]}), ["reason_insufficient"])
	denied(json.remove(valid, ["request/reason"]), ["reason_insufficient"])
}

test_missing_minimum_length_denies if {
	denied(valid, ["reason_insufficient"]) with data.taxaddr.policy_data.min_reason_length as "40"
}

# --- address_incomplete --------------------------------------------------------------

test_incomplete_address_is_denied if denied(with_request({"address_complete": false}), ["address_incomplete"])

test_address_complete_must_be_true_boolean if {
	denied(with_request({"address_complete": "true"}), ["address_incomplete"])
	denied(with_request({"address_complete": 1}), ["address_incomplete"])
	denied(json.remove(valid, ["request/address_complete"]), ["address_incomplete"])
}

# --- case_quota_exhausted ------------------------------------------------------------

test_last_disclosure_is_allowed if allowed(with_usage(4))

test_usage_at_max_is_exhausted if denied(with_usage(5), ["case_quota_exhausted"])

test_usage_over_max_is_exhausted if denied(with_usage(6), ["case_quota_exhausted"])

test_zero_quota_is_exhausted if denied(with_case({"max_disclosures": 0}), ["case_quota_exhausted"])

test_unreadable_usage_is_exhausted if {
	denied(with_usage("0"), ["case_quota_exhausted"])
	denied(with_usage(-1), ["case_quota_exhausted"])
	denied(json.remove(valid, ["case_usage"]), ["case_quota_exhausted"])
	denied(with_case({"max_disclosures": "5"}), ["case_quota_exhausted"])
}

# --- unreadable input, several problems ----------------------------------------------

test_empty_input_denies_with_every_code if denied({}, all_codes)

test_non_object_input_denies_with_every_code if {
	denied("not an object", all_codes)
	denied([valid], all_codes)
	denied(42, all_codes)
}

test_several_problems_are_listed_in_contract_order if {
	inp := object.union(
		with_requester({"role": "oversight", "agency": "CBP"}),
		{"request": object.union(valid.request, {"address_complete": false, "tax_periods": ["1999"]})},
	)
	denied(inp, ["role_forbidden", "agency_mismatch", "tax_period_not_covered", "address_incomplete"])
}

test_allow_needs_every_check if {
	# Dropping any one top-level section of a valid input must deny.
	every key in object.keys(valid) {
		d := disclosure.decision with input as object.remove(valid, {key})
		d.allow == false
		count(d.reasons) > 0
	}
}

test_missing_data_document_denies if {
	d := disclosure.decision with input as valid with data.taxaddr.policy_data as {}
	d.allow == false
	d.reasons == [
		"statute_not_criminal",
		"reason_insufficient",
		"requester_caseload_exceeded",
		"requester_volume_exceeded",
	]
}

# --- fail-open regressions found under real OPA (issue 15) ---------------------------
# Each of these was allowed by OPA 0.61 with the previous policy: a reference
# hoisted out of `not` made the whole check undefined instead of denying.

test_garbage_now_denies_under_both_engines if denied(with_now("garbage"), window_unknown)

test_numeric_statute_denies if {
	denied(with_request({"statute": 5}), ["statute_not_criminal", "statute_not_on_case"])
}

test_unreadable_usage_text_denies if denied(with_usage("none"), ["case_quota_exhausted"])

test_missing_sections_deny_with_their_codes if {
	denied(json.remove(valid, ["requester"]), ["role_forbidden", "agency_mismatch", "requester_not_on_case"])
	denied(json.remove(valid, ["case"]), [
		"case_expired", "case_not_yet_valid", "proceeding_not_criminal", "statute_not_on_case",
		"agency_mismatch", "requester_not_on_case", "subject_not_on_case", "tax_period_not_covered",
		"case_quota_exhausted",
	])
}

# Years the time built-ins cannot represent (OPA: undefined past 2262; regorus:
# an error) deny with reasons instead of failing or allowing.
test_out_of_range_years_deny if {
	denied(with_now("0000-01-01T00:00:00Z"), window_unknown)
	denied(with_now("1969-12-31T23:59:59Z"), window_unknown)
	denied(with_now("2300-01-01T00:00:00Z"), window_unknown)
	denied(with_now("9999-12-31T23:59:59Z"), window_unknown)
}

# NumericDates must be whole seconds in range: both engines then compare exactly.
test_case_bounds_must_be_whole_seconds_in_range if {
	denied(with_case({"exp": 1800000000.5}), ["case_expired"])
	denied(with_case({"exp": 1e300}), ["case_expired"])
	denied(with_case({"nbf": -1}), ["case_not_yet_valid"])
	allowed(with_case({"exp": 4500000000}))
}

test_fraction_of_now_is_dropped_for_whole_second_bounds if {
	denied(object.union(with_now("2026-11-24T21:00:00.999999999Z"), {"case": object.union(valid.case, {"exp": 1795554000})}), ["case_expired"])
	allowed(object.union(with_now("2026-11-24T20:59:59.999999999Z"), {"case": object.union(valid.case, {"exp": 1795554000})}))
}

test_counts_must_be_whole_numbers_in_range if {
	denied(with_usage(0.5), ["case_quota_exhausted"])
	denied(with_usage(1e12), ["case_quota_exhausted"])
	denied(with_case({"max_disclosures": 1e12}), ["case_quota_exhausted"])
}

# 6103(i)(2)(B) asks for specific reasons: repeated or near-duplicate stock
# phrases padded to the minimum length are not.
test_repeated_boilerplate_with_a_short_token_is_insufficient if {
	denied(with_request({"reason": "immigration enforcement immigration enforcement q"}), ["reason_insufficient"])
	denied(with_request({"reason": "immigration enforcement, immigration enforcement, immigration enforcement"}), ["reason_insufficient"])
	denied(with_request({"reason": "Immigration enforcment; removal proceeding; immigration enforcment"}), ["reason_insufficient"])
	denied(with_request({"reason": "xx yy zz aa bb cc dd ee ff gg hh ii jj kk ll mm"}), ["reason_insufficient"])
}

test_specific_words_are_counted_once if {
	denied(with_request({"reason": "warrant warrant warrant warrant warrant warrant warrant"}), ["reason_insufficient"])
}

test_words_are_compared_case_insensitively if {
	denied(with_request({"reason": "WARRANT Warrant warrant DEFENDANT defendant removal proceedings"}), ["reason_insufficient"])
	allowed(with_request({"reason": "WARRANT Warrant warrant DEFENDANT defendant ARREST removal proceedings"}))
}

# Words are runs of ASCII letters and digits in the text as given: a character
# that only lowercases to ASCII is not a letter of a word (the K's below are
# U+212A KELVIN SIGN, lowercase "k").
test_non_ascii_letters_do_not_make_words if {
	denied(with_request({"reason": "immigration enforcement KKK Kelvin removal proceedings"}), ["reason_insufficient"])
}

# A reason without any word has no specific word, whatever the minimum.
test_a_reason_without_words_has_no_specific_word if {
	denied(with_request({"reason": "........................................................"}), ["reason_insufficient"]) with data.taxaddr.policy_data.min_specific_words as 1
	allowed(with_request({"reason": "........................................................"})) with data.taxaddr.policy_data.min_specific_words as 0
}

test_missing_vocabulary_denies if {
	denied(valid, ["reason_insufficient"]) with data.taxaddr.policy_data.boilerplate_vocabulary as []
	denied(valid, ["reason_insufficient"]) with data.taxaddr.policy_data.min_specific_words as "3"
}

# --- requester_caseload_exceeded / requester_volume_exceeded ---------------------------
# data.json: max_open_cases_per_requester 50, max_subjects_per_requester_per_day 25. The
# counts exclude this request, so n + 1 is the number with it counted.

test_caseload_at_the_limit_is_allowed if allowed(with_requester_usage({"open_cases": 49}))

test_caseload_one_past_the_limit_is_exceeded if {
	denied(with_requester_usage({"open_cases": 50}), ["requester_caseload_exceeded"])
}

test_caseload_far_past_the_limit_is_exceeded if {
	denied(with_requester_usage({"open_cases": 5000}), ["requester_caseload_exceeded"])
}

test_volume_at_the_limit_is_allowed if allowed(with_requester_usage({"subjects_24h": 24}))

test_volume_one_past_the_limit_is_exceeded if {
	denied(with_requester_usage({"subjects_24h": 25}), ["requester_volume_exceeded"])
}

test_both_limits_in_contract_order if {
	denied(
		with_requester_usage({"open_cases": 50, "subjects_24h": 25}),
		["requester_caseload_exceeded", "requester_volume_exceeded"],
	)
}

test_quota_comes_before_the_personal_limits if {
	inp := object.union(with_requester_usage({"open_cases": 50}), {"case_usage": {"disclosures": 5}})
	denied(inp, ["case_quota_exhausted", "requester_caseload_exceeded"])
}

test_unreadable_requester_usage_denies if {
	denied(
		json.remove(valid, ["requester_usage"]),
		["requester_caseload_exceeded", "requester_volume_exceeded"],
	)
	denied(with_requester_usage({"open_cases": "0"}), ["requester_caseload_exceeded"])
	denied(with_requester_usage({"open_cases": -1}), ["requester_caseload_exceeded"])
	denied(with_requester_usage({"open_cases": 0.5}), ["requester_caseload_exceeded"])
	denied(with_requester_usage({"subjects_24h": null}), ["requester_volume_exceeded"])
	denied(with_requester_usage({"subjects_24h": 1e12}), ["requester_volume_exceeded"])
	denied(object.union(valid, {"requester_usage": [0, 0]}), [
		"requester_caseload_exceeded",
		"requester_volume_exceeded",
	])
}

test_missing_limits_in_the_data_deny if {
	d := disclosure.decision with input as valid
		with data.taxaddr.policy_data.max_open_cases_per_requester as "50"
	d.allow == false
	d.reasons == ["requester_caseload_exceeded"]
	e := disclosure.decision with input as valid
		with data.taxaddr.policy_data.max_subjects_per_requester_per_day as null
	e.allow == false
	e.reasons == ["requester_volume_exceeded"]
}

# --- disclosure_stayed -----------------------------------------------------------------

stay := {"jti": "order-1", "number": "1:25-cv-04321", "court": "D.D.C."}

test_a_stay_in_force_denies if denied(object.union(valid, {"orders": [stay]}), ["disclosure_stayed"])

test_two_stays_deny_once if {
	denied(object.union(valid, {"orders": [stay, object.union(stay, {"jti": "order-2"})]}), ["disclosure_stayed"])
}

test_stay_comes_second_in_contract_order if {
	inp := object.union(with_requester({"role": "oversight"}), {"orders": [stay]})
	denied(inp, ["role_forbidden", "disclosure_stayed"])
}

test_unreadable_orders_deny if {
	denied(json.remove(valid, ["orders"]), ["disclosure_stayed"])
	denied(object.union(valid, {"orders": null}), ["disclosure_stayed"])
	denied(object.union(valid, {"orders": {}}), ["disclosure_stayed"])
	denied(object.union(valid, {"orders": "none"}), ["disclosure_stayed"])
}
