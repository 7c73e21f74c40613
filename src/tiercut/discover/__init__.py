"""Finding tiercut nodes on a LAN: a tier server announces itself over mDNS (``tiercut serve
--announce``), ``tiercut cluster discover`` browses for them, measures each node's speed and
the links between them, and writes the cluster file that ``tiercut cluster plan`` reads.

record.py: the TXT record a node announces (and this host's CPUs and memory); mdns.py: the
zeroconf announcer and browser; links.py: link rates from timed Probe / ProbePeer calls;
survey.py: the measurements and the cluster file.

May import zoo, graph, measure, runtime and cluster; the command line imports it.
"""
from .links import LinkError, LinkEstimate, fit, probe_here, probe_peer
from .mdns import Announcer, announced_addresses, browse, default_interfaces
from .record import SERVICE, BadRecord, NodeRecord, available_cpus, available_memory, parse
from .survey import Survey, SurveyError, cluster_dict, survey

__all__ = ["SERVICE", "Announcer", "BadRecord", "LinkError", "LinkEstimate", "NodeRecord",
           "Survey", "SurveyError", "announced_addresses", "available_cpus",
           "available_memory", "browse", "cluster_dict", "default_interfaces", "fit", "parse",
           "probe_here", "probe_peer", "survey"]
