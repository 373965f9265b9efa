"""Malware scanning of what recipients upload (issue 19): ``clamd`` (ClamAV's daemon over its
socket), ``verdicts`` (statuses, our object tags, GuardDuty's), ``scan`` (each object of a
slot judged once per ETag, tagged, infected ones quarantined)."""
