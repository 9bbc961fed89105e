"""The L7 stage: DNS, HTTP/1.x and TLS ClientHellos read from the bytes the datapath captured, with no proxy.

Hubble learns L7 from an Envoy proxy that an L7 policy puts in the path of a pod's traffic: nothing is seen
until someone writes such a policy, and every message then pays a detour through user space. The datapath here
already holds each packet's bytes, so it captures more of them on L7 ports and this stage parses them after the
fact: every pod gets L7 visibility, and the traffic itself is never delayed. The parsers are pure functions on
payload bytes that never raise, because their input is whatever a pod chose to send.
"""
