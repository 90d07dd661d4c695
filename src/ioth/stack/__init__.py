"""The user-mode IPv4/IPv6 stack: one :class:`~ioth.stack.stack.Stack` object per node.

Layout: ``core`` (sans-IO state, Ethernet, timers), ``arp``/``neighbour`` (ARP and the NUD state
machine), ``ipv4``/``icmp4``, ``ipv6``/``icmp6``/``ndp``/``mld``, ``reassembly``, ``udp`` and
``endpoints`` (datagram sockets' protocol half), ``route``, ``config`` (iothconf strings),
``hashaddr`` (hash addresses and MACs), ``runtime`` (engine glue), ``sockets`` and ``stack``
(the public API), ``tcp/`` (TCP).
"""
