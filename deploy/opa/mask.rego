# Decision-log masking for taxaddr's OPA servers (loaded from disk next to the
# bundle; OPA evaluates data.system.log.mask before it logs a decision).
#
# The requester's free-text reason may describe the taxpayer or the
# investigation: it belongs in the service's encrypted accounting record, not
# in decision logs shipped to a log service. The rest of the input holds no
# TIN, name or address (subjects are keyed pseudonyms; the address is only the
# boolean address_complete).
package system.log

import rego.v1

mask contains "/input/request/reason"
