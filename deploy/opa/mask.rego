# Decision-log masking for taxaddr's OPA servers (loaded from disk next to the
# bundle; OPA evaluates data.system.log.mask before it logs a decision).
#
# The requester's free-text reason may describe the taxpayer or the
# investigation, and a subject pseudonym links every decision about one
# taxpayer: both belong in the service's encrypted accounting record, not in
# decision logs shipped to a log service. The rest of the input holds no TIN,
# name or address (the address is only the boolean address_complete).
package system.log

import rego.v1

mask contains "/input/request/reason"

mask contains "/input/request/subject_ref"

mask contains "/input/case/subject_refs"
