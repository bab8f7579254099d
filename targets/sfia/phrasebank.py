"""The phrase bank the SFIA data generator composes documents from (all our own wording).

What is here, and why it is split the way it is:
  ACTIVITIES[code]     (train, heldout) activity phrasings per skill: 12 + 4 for each of the 33 skills.
                       Written from the skill descriptions the way employers and candidates describe the
                       work (tools, objects, outcomes), several implying the skill without naming it.
                       Each is a verb phrase in the base form ("keep the overnight data feeds running
                       reliably"); `inflect` turns it into the past ("kept ...") or -ing form. The first
                       verb (and a verb chain such as "build and patch", "rack, cable and power up") is
                       inflected automatically; a later verb is marked with ^ ("log customer issues and
                       ^follow them up"). The phrase as it appears in the document is the evidence.
  LEVEL_STATEMENTS[n]  (train, heldout) statements of responsibility, autonomy, influence and complexity
                       for SFIA level n (whom they report to, whom they lead, what they decide, what they
                       are accountable for, how far their influence reaches). 13 + 4 per level. Each is
                       (voice, template): voice "both" renders as an advert ("You lead ...") or first
                       person ("I lead ..." / "I led ..."); "ad" and "me" are one voice only. Template
                       tokens: {You}/{you} subject, {you_obj} object, {Your}/{your}, {yourself}, {are}
                       (are / am / was), [present|past] verb pairs, {area} (what the skill works on).
  LEVEL_LEADS[n]       (train, heldout) short level clauses that open an activity sentence
                       ("As team lead, you'll ..."): 4 + 1 per level.
  TITLES, AREAS, TOOLS per skill; generic titles that name no skill; seniority words per level.
  NOISE[pool]          (train, heldout) realistic text that maps to no skill: company boilerplate,
                       benefits, location and hybrid rules, application instructions, equal-opportunities
                       and visa lines, soft lines, duty-like lines that are not a skill, hobbies,
                       education, CV headers. Items may carry a locale tag ("uk:" / "us:") and slots
                       ({org}, {city}, {title}, {a_title}, ...) the generator fills.

HELD-OUT means: never used in training or dev rows, only in the synthetic gold split, so that split
measures generalisation to unseen phrasings. About a quarter of every list is held out.

None of the old cue phrases of cues.py is reused (tests/test_sfia_data.py checks it), and no item contains
an SFIA skill code as a word.
"""
from __future__ import annotations

import re

# ---------------------------------------------------------------------------------------------------------
# Activities: code -> (train phrasings, held-out phrasings)
# ---------------------------------------------------------------------------------------------------------
ACTIVITIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "PROG": ((
        "write clean, well-tested Python for our booking platform",
        "ship new features in our TypeScript and React front end",
        "review pull requests and ^pair with other developers",
        "refactor legacy Java services so they are easier to change",
        "fix bugs raised by customers in the mobile app",
        "build REST APIs in Go for partner integrations",
        "write unit tests alongside every code change",
        "turn backlog tickets into working, reviewed code",
        "maintain the C# codebase behind our payments engine",
        "implement product features in Kotlin for Android",
        "profile and speed up slow code paths in production",
        "code new modules for the order management system",
    ), (
        "develop microservices in Node.js for the checkout flow",
        "debug and patch defects reported in the web portal",
        "write and review Rust code for the trading gateway",
        "translate designs into production-ready Vue components",
    )),
    "SWDN": ((
        "design the module structure and interfaces for new services",
        "sketch class and sequence diagrams for new features",
        "decide how components talk to each other inside the application",
        "write technical design documents for upcoming features",
        "define API contracts between the front end and back end",
        "break large features down into well-defined software components",
        "choose the patterns and abstractions used across the codebase",
        "review proposed designs for changes to the application",
        "design how state and events flow through the system",
        "produce low-level designs that developers can build from",
        "plan the internal layering of the mobile app",
        "specify the behaviour of each service component before build",
    ), (
        "work out the interfaces between new and existing modules",
        "document software designs with component diagrams",
        "design extensible plug-in points for the core product",
        "turn product requirements into detailed component designs",
    )),
    "TEST": ((
        "write and run test scripts for each sprint's stories",
        "check new releases against the acceptance criteria",
        "log defects in Jira with clear steps to reproduce",
        "build automated regression suites in Playwright",
        "carry out manual exploratory testing of the web app",
        "plan the testing approach for each new feature",
        "run user acceptance testing with business users",
        "verify bug fixes before they go to production",
        "maintain Selenium tests for the customer portal",
        "design test cases from functional specifications",
        "retest failed scenarios and ^report results to the squad",
        "prepare test data and environments for system testing",
    ), (
        "execute end-to-end test packs before every release",
        "confirm each user story behaves as the specification describes",
        "automate API checks with Postman and Newman",
        "triage and reproduce defects found during regression runs",
    )),
    "ARCH": ((
        "design end-to-end solutions that fit our wider technology estate",
        "produce solution designs for new cloud platforms on Azure",
        "decide how new systems integrate with the existing estate",
        "assess build, buy and reuse options for new capabilities",
        "write architecture decision records for major projects",
        "make sure delivery teams follow the agreed target architecture",
        "map business requirements onto technical solution options",
        "design the integration approach between the CRM and ERP",
        "check project designs against our reference architecture",
        "lay out the technical solution for large transformation programmes",
        "weigh cost, security and scalability trade-offs in solution options",
        "create high-level designs covering applications, data and infrastructure",
    ), (
        "draw up the technical blueprint for the new claims platform",
        "define how off-the-shelf products fit into our estate",
        "produce options papers comparing candidate technical solutions",
        "set out the target-state design for a cloud migration",
    )),
    "DBAD": ((
        "look after our PostgreSQL and SQL Server databases",
        "set up and test database backups and restores",
        "tune slow queries and ^rebuild fragmented indexes",
        "patch and upgrade Oracle database instances",
        "manage database replication and failover clusters",
        "monitor database capacity, locks and growth",
        "grant and revoke database permissions for application accounts",
        "install and configure new MySQL servers",
        "run point-in-time recovery drills on production databases",
        "automate routine database maintenance jobs",
        "migrate databases between versions with minimal downtime",
        "keep the MongoDB clusters healthy and responsive",
    ), (
        "administer the Azure SQL estate day to day",
        "plan database storage and ^archive old partitions",
        "troubleshoot deadlocks and blocking in the live database",
        "maintain high-availability groups for critical databases",
    )),
    "DTAN": ((
        "design logical and physical data models for new systems",
        "define entities, attributes and keys for the CRM data",
        "maintain the enterprise data dictionary and business glossary",
        "produce entity-relationship diagrams for product teams",
        "design dimensional star schemas for the reporting layer",
        "agree canonical data definitions with data owners",
        "model customer and policy data for the new platform",
        "normalise database schemas for the order system",
        "document how data items map between source systems",
        "set naming standards for tables, fields and codes",
        "review schema changes against the conceptual data model",
        "design JSON message schemas for event data",
    ), (
        "create conceptual models of the organisation's core data",
        "capture master data definitions for products and suppliers",
        "design the data vault model for the new warehouse",
        "work out the keys and links between data tables",
    )),
    "DENG": ((
        "build ETL jobs that load sales data into Snowflake",
        "write dbt models that transform raw data",
        "orchestrate data workflows in Airflow",
        "keep the overnight data feeds running reliably",
        "ingest streaming events from Kafka into the lake",
        "develop ingestion pipelines from third-party APIs",
        "prepare clean, documented datasets for the analytics team",
        "move on-premise data loads onto Databricks",
        "add data quality checks to every pipeline",
        "build Spark jobs that process clickstream data",
        "maintain the batch loads from finance systems into BigQuery",
        "automate data extracts from the legacy mainframe",
    ), (
        "engineer the feeds that land patient data in the lakehouse",
        "build incremental loads from operational databases into Redshift",
        "monitor and repair failed data pipeline runs",
        "set up change data capture from core systems",
    )),
    "DAAN": ((
        "analyse sales figures to explain changes in revenue",
        "dig into customer data to find why churn is rising",
        "answer ad hoc business questions with SQL",
        "spot trends in operational data and ^report them to managers",
        "segment customers by behaviour and value",
        "measure the impact of marketing campaigns",
        "produce monthly performance analysis for each region",
        "investigate anomalies in transaction volumes",
        "turn raw figures into recommendations for product teams",
        "build the KPI analysis behind quarterly business reviews",
        "analyse footfall and basket data across stores",
        "compare performance across regions to explain variation",
    ), (
        "interrogate claims data to uncover cost drivers",
        "work out what drives repeat purchases from order data",
        "run cohort analysis on subscriber data",
        "pull and analyse data to answer questions from leadership",
    )),
    "DATS": ((
        "build forecasting models for product demand",
        "design and analyse A/B tests on the website",
        "apply regression and classification to pricing problems",
        "develop propensity models to target offers",
        "explore large datasets with Python, pandas and Jupyter",
        "use statistical methods to estimate causal effects",
        "prototype churn prediction models for the retention team",
        "run simulations of operational scenarios",
        "build customer lifetime value models",
        "frame business questions as testable hypotheses",
        "apply time-series methods to energy usage data",
        "present statistical findings to non-technical audiences",
    ), (
        "model risk scores from historical claims data",
        "design experiments to measure the effect of new features",
        "use Bayesian methods to estimate uncertainty in forecasts",
        "mine patient records for patterns that predict readmission",
    )),
    "MLNG": ((
        "train and fine-tune deep learning models in PyTorch",
        "deploy models behind low-latency inference APIs",
        "build feature pipelines for machine learning models",
        "monitor models in production for drift",
        "fine-tune large language models on internal documents",
        "set up MLOps tooling for training and deployment",
        "build recommendation engines for the online store",
        "label training data and ^evaluate model accuracy",
        "retrain computer vision models as new images arrive",
        "package models with Docker and ^serve them on Kubernetes",
        "optimise neural networks to run on mobile devices",
        "build NLP classifiers for support ticket routing",
    ), (
        "productionise machine learning models on SageMaker",
        "train image classifiers on our labelled dataset",
        "build retrieval-augmented generation services with vector search",
        "evaluate and compare model architectures for fraud detection",
    )),
    "VISL": ((
        "build Power BI dashboards for finance and operations",
        "design clear charts for monthly management packs",
        "create Tableau workbooks that managers can explore",
        "turn complex data into simple visual stories",
        "redesign cluttered reports so they are easy to read",
        "produce interactive maps of service coverage",
        "maintain self-service reporting in Looker",
        "set design standards for charts and dashboards",
        "build infographics for public-facing reports",
        "prototype dashboard layouts with stakeholders",
        "choose the right chart for each audience",
        "visualise survey results for internal newsletters",
    ), (
        "create Qlik dashboards showing hospital waiting times",
        "design data graphics for annual and public reports",
        "lay out KPI scorecards so trends are obvious",
        "turn spreadsheets of results into clear visual summaries",
    )),
    "ITOP": ((
        "watch server and storage alerts in the monitoring console",
        "carry out daily health checks on infrastructure",
        "run scheduled batch jobs and ^check their output",
        "rack, cable and power up new hardware",
        "manage backups and tape rotation for the data centre",
        "respond to alerts from Nagios and Datadog",
        "keep VMware hosts and clusters running smoothly",
        "automate routine infrastructure tasks with Ansible",
        "provision virtual machines and storage on request",
        "maintain cloud infrastructure with Terraform",
        "apply firmware updates to servers and storage arrays",
        "track capacity on compute and storage platforms",
    ), (
        "keep the on-premise server estate running day to day",
        "swap failed disks and hardware in the server room",
        "check overnight jobs and ^restart any failed ones",
        "manage AWS infrastructure using infrastructure as code",
    )),
    "NTAS": ((
        "troubleshoot Wi-Fi and LAN problems across our offices",
        "configure Cisco switches and access points",
        "fix VPN connection issues for remote staff",
        "patch network cabling and ^replace faulty ports",
        "monitor network links and bandwidth usage",
        "apply firewall rule changes raised by other teams",
        "upgrade firmware on routers and switches",
        "diagnose packet loss and latency complaints",
        "maintain DNS and DHCP services",
        "keep the WAN between branches up and running",
        "respond to network outage tickets from the service desk",
        "keep network diagrams current after every change",
    ), (
        "resolve connectivity faults at remote sites",
        "set up network ports and VLANs for new desks",
        "replace failed access points and edge switches",
        "investigate slow network performance reported by users",
    )),
    "NTDS": ((
        "design network topologies for new offices and data centres",
        "plan SD-WAN rollouts across our branches",
        "size network capacity for expected growth",
        "design resilient routing between cloud and on-premise sites",
        "produce low-level network designs and IP addressing plans",
        "select network hardware for new builds",
        "design segmentation and VLAN schemes for the campus",
        "plan redundancy so single link failures go unnoticed",
        "model traffic flows to plan network upgrades",
        "design the network for our new Azure landing zone",
        "write network design standards for the estate",
        "plan the migration from MPLS to internet-based WAN",
    ), (
        "architect the campus and data centre network layout",
        "work out link sizes and routing for new sites",
        "draw up wireless coverage designs for warehouses",
        "design the addressing scheme for a merged network",
    )),
    "SYSP": ((
        "build and patch Linux servers across the estate",
        "administer Windows Server and Group Policy",
        "apply monthly operating system patches",
        "install and configure web servers and middleware",
        "manage server configuration with Puppet",
        "harden operating system builds to the agreed baseline",
        "upgrade operating systems to supported versions",
        "maintain the gold server images used for new builds",
        "troubleshoot kernel and driver issues",
        "script server administration tasks in PowerShell and Bash",
        "manage package repositories and software updates",
        "configure system logging and time services",
    ), (
        "look after Red Hat servers and their patching",
        "keep operating systems and firmware up to date",
        "roll out OS updates with SCCM",
        "tune Linux systems for performance and stability",
    )),
    "USUP": ((
        "work incidents through to resolution within SLA",
        "coordinate the response to major outages",
        "record and categorise incidents in ServiceNow",
        "run bridge calls during priority one incidents",
        "keep users updated while incidents are being fixed",
        "escalate incidents to the right resolver groups",
        "chase resolver teams so incidents close on time",
        "write incident reports after major outages",
        "get systems back online quickly when outages hit",
        "triage alerts and ^raise incidents out of hours",
        "join the on-call rota for live service incidents",
        "communicate outage status to affected stakeholders",
    ), (
        "handle priority incidents from detection to closure",
        "coordinate fixes when customer-facing services fail",
        "route incoming incidents to the right support team",
        "restore disrupted services and ^record what happened",
    )),
    "PBMG": ((
        "dig into recurring incidents to find underlying causes",
        "run root cause analysis after repeat outages",
        "maintain the known error database",
        "trend incident data to spot recurring problems",
        "drive permanent fixes for repeat faults",
        "write workarounds for known errors",
        "hold post-incident reviews to stop repeat failures",
        "use five whys and fishbone analysis on major faults",
        "raise problem records for recurring incidents",
        "track problem fixes through to closure",
        "work with vendors to remove causes of repeat failures",
        "analyse incident patterns to prevent future outages",
    ), (
        "investigate why the same faults keep coming back",
        "pin down the root cause of intermittent outages",
        "manage the backlog of open problem records",
        "publish known errors and workarounds for the service desk",
    )),
    "CHMG": ((
        "review and approve change requests for live systems",
        "prepare the agenda for the weekly CAB",
        "assess the risk and impact of proposed changes",
        "maintain the forward schedule of change",
        "check that changes have tested back-out plans",
        "record and track changes in ServiceNow",
        "run post-implementation reviews of failed changes",
        "authorise emergency changes out of hours",
        "enforce the change freeze over peak trading",
        "audit changes against the approved change process",
        "spot conflicting changes in the change calendar",
        "keep unauthorised changes out of production",
    ), (
        "vet changes to production systems before they go ahead",
        "evaluate change requests for risk before sign-off",
        "manage the change calendar and its approvals",
        "review emergency changes after the event",
    )),
    "RELM": ((
        "plan release schedules across product teams",
        "coordinate go-live activities for each release",
        "run release readiness checks before deployment",
        "manage CI/CD release pipelines in GitLab",
        "bundle approved changes into release packages",
        "agree release dates with development and operations teams",
        "produce release notes for each version",
        "manage version numbering and release branches",
        "roll back failed releases safely",
        "run go/no-go meetings before major launches",
        "schedule deployments into test and production environments",
        "track release dependencies across teams",
    ), (
        "coordinate monthly releases of the core platform",
        "get new versions into production safely and on schedule",
        "manage the release train for our mobile apps",
        "plan cutover activities for major software releases",
    )),
    "SCTY": ((
        "write information security policies and standards",
        "assess new systems against our security standards",
        "prepare for ISO 27001 audits and ^maintain the ISMS",
        "advise project teams on security requirements",
        "run the security awareness programme for staff",
        "maintain the ISMS and its supporting controls",
        "review third-party security questionnaires",
        "set data classification and handling rules",
        "check compliance with Cyber Essentials and PCI DSS",
        "define security requirements for cloud services",
        "report on the organisation's security posture",
        "carry out security reviews of new projects",
    ), (
        "maintain the security policy framework and its exceptions",
        "advise colleagues on protecting personal and sensitive data",
        "keep controls aligned with NIST and ISO standards",
        "review encryption and logging standards for new systems",
    )),
    "SCAD": ((
        "triage alerts in the SIEM and ^investigate suspicious activity",
        "hunt for threats across endpoint and network logs",
        "respond to phishing reports from staff",
        "contain malware infections on user devices",
        "tune detection rules in Splunk",
        "run vulnerability scans and ^chase remediation",
        "work shifts in the security operations centre",
        "investigate security incidents and ^preserve evidence",
        "manage endpoint protection and EDR tooling",
        "review firewall and proxy logs for anomalies",
        "write playbooks for common security events",
        "escalate confirmed intrusions to the incident team",
    ), (
        "monitor Sentinel alerts and ^close false positives",
        "isolate compromised hosts and ^clean them up",
        "patrol logs for signs of attack",
        "handle security alerts raised overnight",
    )),
    "PENT": ((
        "test web applications for OWASP Top 10 flaws",
        "run internal and external infrastructure pentests",
        "exploit misconfigurations to show real impact",
        "write clear pentest reports with remediation advice",
        "run red team exercises against our estate",
        "test APIs and mobile apps for security flaws",
        "use Burp Suite and Metasploit on client engagements",
        "probe cloud environments for weak configurations",
        "scope penetration testing engagements with clients",
        "attempt privilege escalation on hardened hosts",
        "retest fixed vulnerabilities to confirm closure",
        "simulate phishing campaigns to test staff",
    ), (
        "break into test environments to expose weaknesses",
        "hack into client systems with permission to find gaps",
        "assess Active Directory for attack paths",
        "find and exploit vulnerabilities in web applications",
    )),
    "IAMT": ((
        "set up and remove user accounts for joiners and leavers",
        "run quarterly access reviews with system owners",
        "configure single sign-on and MFA in Okta",
        "administer Active Directory groups and permissions",
        "manage privileged accounts in CyberArk",
        "process access requests through the identity portal",
        "design role-based access models for key systems",
        "remove stale accounts and excess permissions",
        "integrate new applications with Azure AD",
        "reset passwords and ^unlock accounts for staff",
        "enforce least-privilege access across cloud platforms",
        "automate joiner, mover and leaver processes",
    ), (
        "recertify user access with application owners",
        "provision accounts and entitlements in SailPoint",
        "control who can reach sensitive systems and data",
        "manage the multi-factor authentication rollout for staff",
    )),
    "PRMG": ((
        "run projects from initiation to closure",
        "manage project budgets, plans and RAID logs",
        "report project progress to steering groups",
        "deliver IT projects on time and within budget",
        "keep project risks, issues and dependencies under control",
        "plan work packages and milestones with suppliers",
        "handle scope changes with the project board",
        "coordinate project teams across several locations",
        "produce project initiation documents and plans",
        "track project spend against forecast",
        "run Prince2 and agile projects",
        "manage the rollout of new systems to sites",
    ), (
        "take projects from kick-off to handover",
        "keep delivery plans, costs and timelines on track",
        "chair weekly checkpoints and ^update the project plan",
        "deliver the office relocation project to budget",
    )),
    "REQM": ((
        "gather requirements from stakeholders in workshops",
        "write user stories with clear acceptance criteria",
        "maintain the product backlog with the product owner",
        "trace requirements through design, build and testing",
        "agree scope and requirements with business users",
        "document functional and non-functional requirements",
        "manage requirement changes during delivery",
        "run requirements workshops for new services",
        "turn stakeholder needs into clear specifications",
        "keep the requirements catalogue up to date",
        "validate requirements with users before build",
        "prioritise requirements using MoSCoW",
    ), (
        "capture and refine requirements for the new CRM",
        "write specifications that developers can build against",
        "track requirements in Jira and Confluence",
        "get sign-off on requirements from business owners",
    )),
    "BUSA": ((
        "map current processes and ^find bottlenecks",
        "interview staff to understand how work really gets done",
        "analyse business problems and ^recommend options",
        "produce as-is and to-be process maps",
        "build business cases for proposed changes",
        "carry out gap analysis between current and future state",
        "assess the impact of change on teams and processes",
        "investigate why customer complaints are rising",
        "model options and costs for service redesign",
        "review operating models to find efficiencies",
        "facilitate workshops to agree business problems",
        "analyse how policy changes affect operations",
    ), (
        "observe frontline teams to understand pain points",
        "work out the options for fixing a broken process",
        "compare the cost and benefit of alternative solutions",
        "study how the finance team works and ^propose improvements",
    )),
    "HCEV": ((
        "design user journeys and screen flows",
        "build clickable prototypes in Figma",
        "sketch wireframes for new features",
        "simplify sign-up forms to cut drop-off",
        "design mobile app interfaces",
        "maintain the design system and component library",
        "iterate designs based on usability findings",
        "design onboarding experiences for new customers",
        "create interaction patterns for complex workflows",
        "turn research insights into design concepts",
        "design admin screens for internal staff",
        "craft microcopy and layouts for checkout",
    ), (
        "design the end-to-end experience for online applications",
        "prototype new journeys and ^refine them with feedback",
        "redesign the navigation of our customer website",
        "produce high-fidelity screen designs for developers",
    )),
    "URCH": ((
        "run user interviews and contextual enquiries",
        "plan and run usability testing sessions",
        "recruit participants for research studies",
        "analyse research findings and ^share insights",
        "run diary studies with customers",
        "build personas from research data",
        "conduct surveys to understand user needs",
        "observe people using our services in context",
        "present research findings to product teams",
        "plan research roadmaps with designers",
        "carry out discovery research for new services",
        "test prototypes with real users",
    ), (
        "speak to customers to learn how they use the app",
        "run remote moderated research sessions",
        "synthesise interview notes into themes",
        "shadow staff to learn how they use internal tools",
    )),
    "CSMG": ((
        "answer customer calls, emails and live chats",
        "resolve customer complaints at first contact",
        "help customers set up and use our software",
        "log customer issues and ^follow them up",
        "handle billing and account queries",
        "guide customers through troubleshooting steps",
        "keep help-centre articles up to date",
        "escalate complex queries to second line",
        "support customers with product questions by phone",
        "process refunds and returns for customers",
        "look after key customer accounts day to day",
        "respond to support tickets in Zendesk",
    ), (
        "handle inbound customer enquiries across channels",
        "sort out customer problems with orders and deliveries",
        "walk users through fixes on the phone",
        "reply to customer questions on social media",
    )),
    "SLMO": ((
        "agree service targets with business customers",
        "report monthly performance against SLAs",
        "run service reviews with client stakeholders",
        "investigate service level breaches and ^agree actions",
        "define service level agreements for new services",
        "produce service performance reports for customers",
        "maintain the service catalogue and its targets",
        "track availability and response times against targets",
        "negotiate service credits with customers",
        "drive service improvement plans",
        "set up operational level agreements between teams",
        "review KPIs with internal customers each month",
    ), (
        "monitor whether services meet their agreed targets",
        "hold quarterly service reviews with each client",
        "agree and document service levels for new contracts",
        "chase improvement actions when targets are missed",
    )),
    "SUPP": ((
        "manage relationships with our key IT suppliers",
        "track supplier performance against contract KPIs",
        "negotiate contract renewals with vendors",
        "run quarterly business reviews with suppliers",
        "onboard new suppliers and ^check due diligence",
        "manage outsourced service contracts",
        "resolve disputes with third-party providers",
        "maintain the supplier register and contract database",
        "benchmark supplier costs and terms",
        "manage licence renewals with software vendors",
        "hold vendors to their contractual commitments",
        "run tenders to select new suppliers",
    ), (
        "oversee the managed service provider's delivery",
        "review vendor invoices and contract compliance",
        "agree improvement plans with underperforming suppliers",
        "keep an eye on what our outsourcers actually deliver",
    )),
    "BURM": ((
        "identify and score operational risks",
        "keep the corporate risk register current",
        "run risk workshops with business units",
        "track mitigation actions with risk owners",
        "report top risks to the audit committee",
        "define risk appetite and tolerance levels",
        "assess risks of new products and changes",
        "monitor key risk indicators",
        "challenge the first line on risk controls",
        "write the risk management framework",
        "quantify financial and operational risk exposure",
        "run scenario analysis for emerging risks",
    ), (
        "work with managers to assess and treat risks",
        "keep track of risks, owners and actions",
        "test controls and ^report weaknesses to management",
        "horizon-scan for new regulatory and operational risks",
    )),
    "ITSP": ((
        "write the three-year technology strategy",
        "align IT investment with business goals",
        "develop the digital roadmap with executives",
        "run strategic planning cycles for the IT function",
        "assess market and technology trends for strategy",
        "set priorities for the technology portfolio",
        "turn corporate goals into technology plans",
        "prepare strategy papers for the board",
        "define the target operating model for IT",
        "track delivery of strategic objectives",
        "shape long-term plans for data and digital",
        "facilitate strategy away days with senior leaders",
    ), (
        "draw up the five-year plan for technology",
        "link the organisation's goals to IT priorities",
        "write the strategic case for platform modernisation",
        "plan how technology supports our growth ambitions",
    )),
}

# ---------------------------------------------------------------------------------------------------------
# Verb forms: base -> (past, -ing). Every verb that starts an activity or is marked with ^ is listed.
# ---------------------------------------------------------------------------------------------------------
VERB_FORMS: dict[str, tuple[str, str]] = {
    "add": ("added", "adding"), "administer": ("administered", "administering"),
    "advise": ("advised", "advising"), "agree": ("agreed", "agreeing"), "align": ("aligned", "aligning"),
    "analyse": ("analysed", "analysing"), "answer": ("answered", "answering"), "apply": ("applied", "applying"),
    "architect": ("architected", "architecting"), "archive": ("archived", "archiving"),
    "assess": ("assessed", "assessing"), "attempt": ("attempted", "attempting"), "audit": ("audited", "auditing"),
    "authorise": ("authorised", "authorising"), "automate": ("automated", "automating"),
    "benchmark": ("benchmarked", "benchmarking"), "break": ("broke", "breaking"), "build": ("built", "building"),
    "bundle": ("bundled", "bundling"), "cable": ("cabled", "cabling"), "capture": ("captured", "capturing"),
    "carry": ("carried", "carrying"), "chair": ("chaired", "chairing"), "challenge": ("challenged", "challenging"),
    "chase": ("chased", "chasing"), "check": ("checked", "checking"), "choose": ("chose", "choosing"),
    "clean": ("cleaned", "cleaning"), "close": ("closed", "closing"), "code": ("coded", "coding"),
    "communicate": ("communicated", "communicating"), "compare": ("compared", "comparing"),
    "conduct": ("conducted", "conducting"), "configure": ("configured", "configuring"),
    "confirm": ("confirmed", "confirming"), "contain": ("contained", "containing"),
    "control": ("controlled", "controlling"), "coordinate": ("coordinated", "coordinating"),
    "craft": ("crafted", "crafting"), "create": ("created", "creating"), "debug": ("debugged", "debugging"),
    "decide": ("decided", "deciding"), "define": ("defined", "defining"), "deliver": ("delivered", "delivering"),
    "deploy": ("deployed", "deploying"), "design": ("designed", "designing"), "develop": ("developed", "developing"),
    "diagnose": ("diagnosed", "diagnosing"), "dig": ("dug", "digging"), "document": ("documented", "documenting"),
    "draw": ("drew", "drawing"), "drive": ("drove", "driving"), "enforce": ("enforced", "enforcing"),
    "engineer": ("engineered", "engineering"), "escalate": ("escalated", "escalating"),
    "evaluate": ("evaluated", "evaluating"), "execute": ("executed", "executing"), "exploit": ("exploited", "exploiting"),
    "explore": ("explored", "exploring"), "facilitate": ("facilitated", "facilitating"), "find": ("found", "finding"),
    "fine-tune": ("fine-tuned", "fine-tuning"), "fix": ("fixed", "fixing"), "follow": ("followed", "following"),
    "frame": ("framed", "framing"), "gather": ("gathered", "gathering"), "get": ("got", "getting"),
    "grant": ("granted", "granting"), "guide": ("guided", "guiding"), "hack": ("hacked", "hacking"),
    "handle": ("handled", "handling"), "harden": ("hardened", "hardening"), "help": ("helped", "helping"),
    "hold": ("held", "holding"), "horizon-scan": ("horizon-scanned", "horizon-scanning"), "hunt": ("hunted", "hunting"),
    "identify": ("identified", "identifying"), "implement": ("implemented", "implementing"),
    "ingest": ("ingested", "ingesting"), "install": ("installed", "installing"), "integrate": ("integrated", "integrating"),
    "interrogate": ("interrogated", "interrogating"), "interview": ("interviewed", "interviewing"),
    "investigate": ("investigated", "investigating"), "isolate": ("isolated", "isolating"),
    "iterate": ("iterated", "iterating"), "join": ("joined", "joining"), "keep": ("kept", "keeping"),
    "label": ("labelled", "labelling"), "lay": ("laid", "laying"), "link": ("linked", "linking"),
    "log": ("logged", "logging"), "look": ("looked", "looking"), "maintain": ("maintained", "maintaining"),
    "make": ("made", "making"), "manage": ("managed", "managing"), "map": ("mapped", "mapping"),
    "measure": ("measured", "measuring"), "migrate": ("migrated", "migrating"), "mine": ("mined", "mining"),
    "model": ("modelled", "modelling"), "monitor": ("monitored", "monitoring"), "move": ("moved", "moving"),
    "negotiate": ("negotiated", "negotiating"), "normalise": ("normalised", "normalising"),
    "observe": ("observed", "observing"), "onboard": ("onboarded", "onboarding"),
    "optimise": ("optimised", "optimising"), "orchestrate": ("orchestrated", "orchestrating"),
    "oversee": ("oversaw", "overseeing"), "package": ("packaged", "packaging"), "patch": ("patched", "patching"),
    "patrol": ("patrolled", "patrolling"), "perform": ("performed", "performing"), "pin": ("pinned", "pinning"),
    "plan": ("planned", "planning"), "power": ("powered", "powering"), "prepare": ("prepared", "preparing"),
    "present": ("presented", "presenting"), "preserve": ("preserved", "preserving"),
    "prioritise": ("prioritised", "prioritising"), "probe": ("probed", "probing"), "process": ("processed", "processing"),
    "produce": ("produced", "producing"), "productionise": ("productionised", "productionising"),
    "profile": ("profiled", "profiling"), "propose": ("proposed", "proposing"), "prototype": ("prototyped", "prototyping"),
    "provision": ("provisioned", "provisioning"), "publish": ("published", "publishing"), "pull": ("pulled", "pulling"),
    "quantify": ("quantified", "quantifying"), "rack": ("racked", "racking"), "raise": ("raised", "raising"),
    "rebuild": ("rebuilt", "rebuilding"), "recertify": ("recertified", "recertifying"),
    "recommend": ("recommended", "recommending"), "record": ("recorded", "recording"), "recruit": ("recruited", "recruiting"),
    "redesign": ("redesigned", "redesigning"), "refactor": ("refactored", "refactoring"), "refine": ("refined", "refining"),
    "remove": ("removed", "removing"), "repair": ("repaired", "repairing"), "replace": ("replaced", "replacing"),
    "reply": ("replied", "replying"), "report": ("reported", "reporting"), "reproduce": ("reproduced", "reproducing"),
    "reset": ("reset", "resetting"), "resolve": ("resolved", "resolving"), "respond": ("responded", "responding"),
    "restart": ("restarted", "restarting"), "restore": ("restored", "restoring"), "retest": ("retested", "retesting"),
    "retrain": ("retrained", "retraining"), "review": ("reviewed", "reviewing"), "revoke": ("revoked", "revoking"),
    "roll": ("rolled", "rolling"), "route": ("routed", "routing"), "run": ("ran", "running"),
    "schedule": ("scheduled", "scheduling"), "scope": ("scoped", "scoping"), "script": ("scripted", "scripting"),
    "segment": ("segmented", "segmenting"), "select": ("selected", "selecting"), "serve": ("served", "serving"),
    "set": ("set", "setting"), "shadow": ("shadowed", "shadowing"), "shape": ("shaped", "shaping"),
    "share": ("shared", "sharing"), "ship": ("shipped", "shipping"), "simplify": ("simplified", "simplifying"),
    "simulate": ("simulated", "simulating"), "size": ("sized", "sizing"), "sketch": ("sketched", "sketching"),
    "sort": ("sorted", "sorting"), "speak": ("spoke", "speaking"), "specify": ("specified", "specifying"),
    "speed": ("sped", "speeding"), "spot": ("spotted", "spotting"), "study": ("studied", "studying"),
    "support": ("supported", "supporting"), "swap": ("swapped", "swapping"), "synthesise": ("synthesised", "synthesising"),
    "take": ("took", "taking"), "test": ("tested", "testing"), "trace": ("traced", "tracing"),
    "track": ("tracked", "tracking"), "train": ("trained", "training"), "translate": ("translated", "translating"),
    "trend": ("trended", "trending"), "triage": ("triaged", "triaging"), "troubleshoot": ("troubleshot", "troubleshooting"),
    "tune": ("tuned", "tuning"), "turn": ("turned", "turning"), "unlock": ("unlocked", "unlocking"),
    "update": ("updated", "updating"), "upgrade": ("upgraded", "upgrading"), "use": ("used", "using"),
    "validate": ("validated", "validating"), "verify": ("verified", "verifying"), "vet": ("vetted", "vetting"),
    "visualise": ("visualised", "visualising"), "walk": ("walked", "walking"), "watch": ("watched", "watching"),
    "weigh": ("weighed", "weighing"), "work": ("worked", "working"), "write": ("wrote", "writing"),
    "approve": ("approved", "approving"), "score": ("scored", "scoring"), "pair": ("paired", "pairing"),
    "categorise": ("categorised", "categorising"),
}
_PARTICLES = {"up", "out", "down", "into", "back", "after", "through"}


def inflect(phrase: str, form: str) -> str:
    """The phrase in form "base", "past" or "ing": the leading verb chain and every ^-marked verb change.

    >>> inflect("rack, cable and power up new hardware", "past")
    'racked, cabled and powered up new hardware'
    >>> inflect("log customer issues and ^follow them up", "ing")
    'logging customer issues and following them up'
    >>> inflect("set up and test database backups and restores", "past")
    'set up and tested database backups and restores'
    """
    words = phrase.split(" ")
    idx = 1 if form == "past" else 2

    def conj(w: str) -> str:
        core, comma = (w[:-1], ",") if w.endswith(",") else (w, "")
        if form == "base":
            return core + comma
        return VERB_FORMS[core][idx - 1] + comma

    out, i, chain = [], 0, True
    while i < len(words):
        w = words[i]
        if w.startswith("^"):
            out.append(conj(w[1:]))
        elif chain and w.rstrip(",") in VERB_FORMS:
            out.append(conj(w))
            j = i + 1
            if j < len(words) and words[j] in _PARTICLES:
                out.append(words[j])
                i = j
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if w.endswith(",") or out[-1].endswith(","):
                pass  # "rack, cable ..." : the chain continues
            elif nxt in ("and", "or") and i + 2 < len(words) and words[i + 2].rstrip(",") in VERB_FORMS \
                    and not words[i + 2].startswith("^"):
                out.append(nxt)
                i += 1
            else:
                chain = False
        else:
            chain = False if i > 0 or w.rstrip(",") not in VERB_FORMS else chain
            out.append(w)
        i += 1
    return " ".join(out)


def plain(phrase: str) -> str:
    """The phrase without ^ markers (its base form as written in documents)."""
    return phrase.replace("^", "")


# ---------------------------------------------------------------------------------------------------------
# Level statements: level -> (train, held-out) lists of (voice, template)
# ---------------------------------------------------------------------------------------------------------
B, AD, ME = "both", "ad", "me"
LEVEL_STATEMENTS: dict[int, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {
    1: ((
        (B, "{You} [work|worked] from step-by-step guides, and a senior colleague [checks|checked] everything {you} [produce|produced]."),
        (B, "{You} [get|got] a short list of set tasks each morning and [ask|asked] before changing anything."),
        (B, "Every piece of {your} work [is|was] looked over by a team lead before it [goes|went] anywhere."),
        (B, "{You} [pass|passed] anything out of the ordinary straight to {your} supervisor."),
        (B, "{You} {are} still learning the basics, with a buddy on hand for every question."),
        (B, "{Your} tasks [are|were] routine and clearly laid out, with little room for judgement."),
        (B, "{You} [stick|stuck] to written procedures exactly and [hand|handed] over anything outside them."),
        (B, "Most of {your} day [goes|went] on simple, repeatable jobs that {your} manager [sets|set]."),
        (AD, "This is an entry-level trainee post; no experience is needed and full training is given."),
        (AD, "As an apprentice you will shadow experienced staff before doing anything alone."),
        (AD, "You will be closely supervised while you learn the ropes."),
        (ME, "I joined as an apprentice and worked strictly to checklists my mentor gave me."),
        (ME, "My first year was spent on routine tasks, with my manager signing off each one."),
    ), (
        (B, "{You} [carry|carried] out basic tasks exactly as shown and [check|checked] in often with {your} line manager."),
        (AD, "Ideal first job: a supervisor will hand out and check all of your work."),
        (ME, "I was new to the field and needed sign-off on nearly everything I did."),
        (B, "{Your} work [is|was] limited to well-defined routine jobs that others [plan|planned] for {you_obj}."),
    )),
    2: ((
        (B, "{You} [work|worked] under the direction of a senior colleague but [sort|sorted] out simple issues {yourself}."),
        (B, "{You} [help|helped] the wider team by picking up well-understood tasks from the board."),
        (B, "A lead [sets|set] {your} priorities each week; within that {you} [use|used] standard methods."),
        (B, "{You} [handle|handled] straightforward requests on {your} own and [escalate|escalated] trickier ones."),
        (B, "{You} [support|supported] senior colleagues on larger pieces of work."),
        (B, "{Your} work [is|was] checked regularly, though {you} [have|had] some say in how simple jobs get done."),
        (B, "{You} [use|used] established tools and templates rather than inventing new approaches."),
        (B, "{You} [assist|assisted] with {area} while more experienced staff [make|made] the decisions."),
        (AD, "This junior role suits someone with a year or so of experience who wants to grow."),
        (AD, "You will be part of a team of eight, backing up the seniors on day-to-day work."),
        (AD, "Your team lead will meet you weekly to agree what you pick up next."),
        (ME, "As a junior I took on the simpler tickets and asked a senior when stuck."),
        (ME, "I supported two senior analysts, preparing material they then signed off."),
    ), (
        (B, "{You} [pick|picked] up routine items independently but [check|checked] anything new with {your} lead."),
        (AD, "A great second job for someone keen to learn from experienced colleagues."),
        (ME, "I was the junior in a small team, helping seniors with the groundwork."),
        (B, "{You} [contribute|contributed] to {area} using agreed methods, with a senior reviewing {your} output."),
    )),
    3: ((
        (B, "{You} [organise|organised] {your} own workload; {your} manager [sets|set] goals, not tasks."),
        (B, "{You} [deal|dealt] with varied, sometimes tricky problems without needing to be told how."),
        (B, "{You} [work|worked] directly with customers and suppliers to get things resolved."),
        (B, "{You} informally [review|reviewed] the work of newer team members."),
        (B, "{You} [decide|decided] how to approach {your} tasks and [deliver|delivered] them to agreed deadlines."),
        (B, "Once the goals [are|were] agreed, {you} {are} trusted to get on with it."),
        (B, "{You} [own|owned] {your} part of {area} from start to finish."),
        (B, "{You} [use|used] judgement on non-routine cases and [know|knew] when to escalate."),
        (AD, "This is a mid-level role for someone with three or more years of hands-on experience."),
        (AD, "You will be a self-starter, working largely unsupervised."),
        (AD, "You will help new starters find their feet by reviewing their work."),
        (ME, "I managed my own caseload and only went to my manager for the unusual ones."),
        (ME, "I regularly dealt with suppliers and users directly to sort out issues."),
    ), (
        (B, "{You} [set|set] {your} own schedule and [resolve|resolved] most problems without supervision."),
        (AD, "You will be trusted to run your own workload and talk directly to stakeholders."),
        (ME, "I worked without day-to-day oversight and mentored an intern informally."),
        (B, "{You} [handle|handled] a mix of routine and complex work, choosing {your} own approach."),
    )),
    4: ((
        (B, "{You} [lead|led] a small team of three to five people and [allocate|allocated] their work."),
        (B, "{You} [choose|chose] the tools and methods the team [uses|used] for {area}."),
        (B, "{You} {are} responsible for the team's output, not just {your} own."),
        (B, "{You} [coach|coached] junior colleagues and formally [review|reviewed] their work."),
        (B, "{You} [get|got] broad goals from {your} manager and [decide|decided] the detail."),
        (B, "{You} [persuade|persuaded] stakeholders in neighbouring teams to prioritise the work."),
        (B, "{You} [plan|planned] the team's work each quarter and [track|tracked] it."),
        (B, "{You} {are} the go-to person for {area} within the department."),
        (AD, "You will line manage two people and shape how the team works."),
        (AD, "Reporting to the head of department, you will lead a squad of five."),
        (AD, "This senior role carries responsibility for a workstream and the people on it."),
        (ME, "I led a team of four, set their priorities and ran their one-to-ones."),
        (ME, "I was responsible for the delivery of my workstream and chose how we did it."),
    ), (
        (B, "{You} [run|ran] a team of six day to day, setting tasks and checking quality."),
        (AD, "As team lead you will decide the approach and mentor the people who deliver it."),
        (ME, "I took charge of a small team and was accountable for everything it shipped."),
        (B, "{You} [have|had] real freedom to decide how {area} work [is|was] done and who [does|did] it."),
    )),
    5: ((
        (B, "{You} {are} accountable for {area} across the organisation and [set|set] objectives for the teams involved."),
        (B, "{You} [manage|managed] a seven-figure budget and several team leads."),
        (B, "{You} {are} the organisation's authoritative adviser on {area}."),
        (B, "{You} [set|set] the standards that every delivery team [must follow|had to follow]."),
        (B, "{You} [manage|managed] managers and [answer|answered] for the results of the whole function."),
        (B, "Senior leaders [come|came] to {you_obj} for advice on {area}."),
        (B, "{You} [own|owned] the service end to end, including its budget and its people."),
        (B, "{You} [influence|influenced] decisions across several departments and with external partners."),
        (AD, "You will head up a practice of around twenty people and report to a director."),
        (AD, "As practice lead you will be accountable for quality across all our programmes."),
        (AD, "This is a management role with full budget responsibility."),
        (ME, "I ran a function of eighteen people and was accountable for its results."),
        (ME, "I advised the executive team and set the objectives for three team leads."),
    ), (
        (B, "{You} {are} answerable for a major programme of work and the people delivering it."),
        (AD, "You will be the senior expert everyone turns to and will set goals for several teams."),
        (ME, "I held budget and people responsibility for the whole service."),
        (B, "{You} [set|set] objectives for managers and [sign|signed] off the budget for {area}."),
    )),
    6: ((
        (B, "{You} [set|set] the direction and policy for {area} across the whole organisation."),
        (B, "{You} [sit|sat] on the senior leadership team and [lead|led] major change programmes."),
        (B, "{You} {are} accountable to the executive board for {area}."),
        (B, "{You} [initiate|initiated] organisation-wide change and [win|won] support from other directors."),
        (B, "{You} [represent|represented] the organisation with regulators and industry bodies."),
        (B, "{You} [decide|decided] where significant investment [goes|went] across {area}."),
        (B, "{Your} decisions [shape|shaped] how several hundred people work."),
        (B, "{You} [lead|led] a department of over a hundred staff through its heads of function."),
        (AD, "As director you will define policy and lead a department of around 120 people."),
        (AD, "You will report to the COO and influence strategy across the group."),
        (AD, "This senior leadership role owns the organisation-wide agenda for change."),
        (ME, "As head of department I set policy and led a major restructure."),
        (ME, "I sat on the leadership team and steered investment across the group."),
    ), (
        (B, "{You} [drive|drove] major change across the organisation and [set|set] its policies for {area}."),
        (AD, "You will be a member of the executive leadership team, shaping how the whole company works."),
        (ME, "I was the senior leader accountable for the direction of the whole department."),
        (B, "{You} [influence|influenced] the organisation at the highest levels below the board."),
    )),
    7: ((
        (B, "{You} [set|set] the strategy for the whole organisation as a member of the board."),
        (B, "{You} [answer|answered] to the board and shareholders for {area}."),
        (B, "{You} [inspire|inspired] the entire company and [rally|rallied] it around a new direction."),
        (B, "{You} [shape|shaped] policy at national or industry level."),
        (B, "{You} [lead|led] the overall technology vision at executive level."),
        (B, "{You} [make|made] the final call on enterprise-wide investment."),
        (B, "{You} [represent|represented] the company to investors, government and the media."),
        (B, "{You} [decide|decided] the long-term direction for the whole group."),
        (AD, "This is a board-level appointment reporting to the chief executive."),
        (AD, "As chief officer you will set enterprise strategy and lead a workforce of thousands."),
        (AD, "You will join the executive committee and own strategy for the entire group."),
        (ME, "As CIO I set the enterprise strategy and reported to the board."),
        (ME, "I sat on the board and led a global organisation of 3,000 staff."),
    ), (
        (B, "{You} [hold|held] executive responsibility for the direction of the entire enterprise."),
        (AD, "A board seat comes with this role, along with ownership of company-wide strategy."),
        (ME, "I was the executive accountable for strategy across the whole organisation."),
        (B, "{You} [set|set] the vision that the whole organisation [works|worked] towards."),
    )),
}

# level -> (train, held-out) opening clauses: "<lead>, you'll ..." / "<lead>, I ..."
LEVEL_LEADS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    1: (("Working to a fixed checklist", "With a supervisor checking each step", "As a trainee",
         "Fresh out of basic training"), ("Shadowing a senior colleague at first",)),
    2: (("As a junior member of the team", "Taking direction from a team lead", "Backing up senior colleagues",
         "With a senior on hand for tricky cases"), ("Working alongside more experienced staff",)),
    3: (("Without day-to-day supervision", "Managing a personal caseload", "With goals agreed but methods left open",
         "Planning the week's work independently"), ("Trusted to organise the workload alone",)),
    4: (("Leading a team of four", "As team lead", "Supervising two junior colleagues",
         "Setting the team's approach"), ("In charge of a small squad",)),
    5: (("As head of the practice", "Accountable for the whole service", "Holding the function's budget",
         "As lead adviser to senior management"), ("Responsible for several teams and their managers",)),
    6: (("As director of the department", "Setting organisation-wide policy", "From a seat on the senior leadership team",
         "Leading change across the company"), ("Steering investment across the group",)),
    7: (("As a member of the board", "As chief officer of the company", "Setting strategy for the entire group",
         "Leading the whole enterprise"), ("From the executive committee",)),
}

# Short reasons for the reply's rationale (<= 2 words each, so a 4-skill rationale stays <= 12 words).
LEVEL_REASONS = {1: "supervised", 2: "assists", 3: "independent", 4: "leads team", 5: "accountable",
                 6: "sets policy", 7: "sets strategy"}

# ---------------------------------------------------------------------------------------------------------
# Titles, areas and tools per skill
# ---------------------------------------------------------------------------------------------------------
# code -> (titles, areas (what {area} becomes in a level statement), tools)
SKILL_CONTEXT: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "PROG": (("Software Engineer", "Developer", "Backend Engineer", "Full Stack Developer", "Product Engineer"),
             ("the codebase", "our services"), ("Python", "Java", "TypeScript", "Go", "GitHub", "Kotlin")),
    "SWDN": (("Software Engineer", "Senior Developer", "Technical Lead", "Application Designer"),
             ("software design", "the application's structure"), ("UML", "C4 diagrams", "Miro", "Java", ".NET")),
    "TEST": (("QA Engineer", "Test Analyst", "Quality Engineer", "SDET", "Tester"),
             ("quality assurance", "the test approach"), ("Jira", "Selenium", "Cypress", "TestRail", "Playwright")),
    "ARCH": (("Solution Architect", "Technical Architect", "Integration Architect", "Enterprise Designer"),
             ("solution design", "the technical estate"), ("Azure", "AWS", "ArchiMate", "TOGAF", "Sparx EA")),
    "DBAD": (("Database Administrator", "DBA", "Database Engineer", "Data Platform Engineer"),
             ("the database estate", "database operations"), ("PostgreSQL", "SQL Server", "Oracle", "MySQL", "MongoDB")),
    "DTAN": (("Data Modeller", "Data Architect", "Information Analyst", "Data Designer"),
             ("data models", "data design standards"), ("Erwin", "ER/Studio", "SQL", "Collibra", "dbt")),
    "DENG": (("Data Engineer", "Analytics Engineer", "ETL Developer", "Data Platform Engineer"),
             ("the data platform", "our data pipelines"), ("Airflow", "dbt", "Snowflake", "Spark", "Kafka", "Databricks")),
    "DAAN": (("Data Analyst", "Insight Analyst", "Commercial Analyst", "Reporting Analyst", "Analyst"),
             ("analytics", "business insight"), ("SQL", "Excel", "Python", "Google Analytics", "R")),
    "DATS": (("Data Scientist", "Research Scientist", "Quantitative Analyst", "Decision Scientist"),
             ("data science", "statistical modelling"), ("Python", "R", "scikit-learn", "Jupyter", "Stan")),
    "MLNG": (("Machine Learning Engineer", "ML Engineer", "AI Engineer", "Applied Scientist"),
             ("machine learning", "our models"), ("PyTorch", "TensorFlow", "MLflow", "Kubeflow", "SageMaker")),
    "VISL": (("BI Developer", "Visualisation Specialist", "Data Analyst", "Reporting Developer"),
             ("reporting", "dashboards"), ("Power BI", "Tableau", "Looker", "Qlik", "D3.js")),
    "ITOP": (("Infrastructure Engineer", "Operations Technician", "IT Operator", "Platform Engineer II"),
             ("infrastructure operations", "the server estate"), ("VMware", "Ansible", "Terraform", "Datadog", "Nagios")),
    "NTAS": (("Network Engineer", "Network Technician", "Network Support Analyst", "IT Support Engineer"),
             ("network support", "the office networks"), ("Cisco", "Meraki", "Wireshark", "SolarWinds", "Fortinet")),
    "NTDS": (("Network Architect", "Network Designer", "Senior Network Engineer", "Network Consultant"),
             ("network design", "the network estate"), ("Cisco", "Juniper", "Arista", "BGP", "SD-WAN")),
    "SYSP": (("Systems Administrator", "Sysadmin", "Linux Engineer", "Windows Engineer", "Platform Engineer"),
             ("the server platforms", "system administration"), ("Linux", "Windows Server", "Puppet", "Bash", "PowerShell")),
    "USUP": (("Incident Manager", "Service Desk Analyst", "Operations Analyst", "Major Incident Lead"),
             ("incident response", "live service"), ("ServiceNow", "PagerDuty", "Opsgenie", "Jira Service Management")),
    "PBMG": (("Problem Manager", "Service Analyst", "Support Engineer", "Service Improvement Analyst"),
             ("problem management", "service stability"), ("ServiceNow", "Splunk", "Kepner-Tregoe", "Excel")),
    "CHMG": (("Change Manager", "Change Analyst", "Service Manager", "Change Coordinator"),
             ("change control", "the change process"), ("ServiceNow", "ITIL", "Cherwell", "Jira")),
    "RELM": (("Release Manager", "Release Engineer", "DevOps Engineer", "Release Coordinator"),
             ("releases", "the release process"), ("GitLab CI", "Jenkins", "Octopus Deploy", "Azure DevOps", "Jira")),
    "SCTY": (("Security Manager", "Information Security Officer", "GRC Analyst", "Security Consultant"),
             ("information security", "security policy"), ("ISO 27001", "NIST CSF", "Vanta", "OneTrust")),
    "SCAD": (("Security Analyst", "SOC Analyst", "Cyber Defence Analyst", "Threat Analyst"),
             ("security operations", "threat detection"), ("Splunk", "Sentinel", "CrowdStrike", "QRadar", "Defender")),
    "PENT": (("Penetration Tester", "Ethical Hacker", "Offensive Security Consultant", "Red Team Operator"),
             ("offensive security testing", "our testing engagements"), ("Burp Suite", "Metasploit", "Nmap", "Cobalt Strike", "Kali")),
    "IAMT": (("Identity Analyst", "Access Management Specialist", "IAM Engineer", "Identity Engineer"),
             ("identity and access", "user access"), ("Okta", "Azure AD", "SailPoint", "CyberArk", "Ping")),
    "PRMG": (("Project Manager", "Delivery Lead", "Project Lead", "Programme Manager", "Delivery Manager"),
             ("project delivery", "our projects"), ("MS Project", "Jira", "Smartsheet", "Prince2", "Asana")),
    "REQM": (("Business Analyst", "Requirements Analyst", "Product Analyst", "Product Owner"),
             ("requirements", "the backlog"), ("Jira", "Confluence", "Azure DevOps", "Miro")),
    "BUSA": (("Business Analyst", "Business Consultant", "Process Analyst", "Improvement Consultant"),
             ("business analysis", "process improvement"), ("Visio", "Lucidchart", "Excel", "Signavio")),
    "HCEV": (("UX Designer", "Interaction Designer", "Product Designer", "Service Designer"),
             ("user experience", "the design system"), ("Figma", "Sketch", "Axure", "Adobe XD")),
    "URCH": (("User Researcher", "UX Researcher", "Design Researcher", "Insight Researcher"),
             ("user research", "research operations"), ("Dovetail", "Lookback", "UserTesting", "Optimal Workshop")),
    "CSMG": (("Customer Support Agent", "Service Desk Agent", "Support Advisor", "Customer Success Associate"),
             ("customer support", "the help desk"), ("Zendesk", "Freshdesk", "Salesforce Service Cloud", "Intercom")),
    "SLMO": (("Service Level Manager", "Service Delivery Manager", "Account Manager", "Service Owner"),
             ("service levels", "service performance"), ("ServiceNow", "Power BI", "ITIL", "Excel")),
    "SUPP": (("Supplier Manager", "Vendor Manager", "Procurement Lead", "Commercial Manager"),
             ("supplier management", "our vendor portfolio"), ("Coupa", "SAP Ariba", "Excel", "Jaggaer")),
    "BURM": (("Risk Manager", "Risk Analyst", "Governance Lead", "Analyst, Risk & Controls"),
             ("risk management", "the risk framework"), ("Archer", "MetricStream", "Excel", "ServiceNow GRC")),
    "ITSP": (("Head of Strategy", "Strategy Manager", "Chief Technology Officer", "Director of Digital"),
             ("technology strategy", "the digital agenda"), ("PowerPoint", "Excel", "roadmapping tools")),
}

GENERIC_TITLES = (
    "Consultant", "Senior Associate – Digital", "Technology Specialist", "Engineering Manager", "Analyst",
    "IT Officer", "Digital Officer", "Technical Specialist", "Graduate Technologist", "Team Member, Technology",
    "Associate, Technology & Operations", "Specialist II", "Technology Partner", "Operations Specialist",
)
LEADER_TITLES = ("Head of Technology", "IT Director", "Chief Information Officer", "Chief Digital Officer",
                 "VP Engineering", "Director of Operations", "Chief Data Officer", "Group CTO")
SENIORITY = {1: ("Trainee", "Apprentice", "Graduate"), 2: ("Junior", "Associate"), 3: ("", "Mid-level"),
             4: ("Senior", "Lead"), 5: ("Principal", "Staff", "Lead"), 6: ("Principal", "Senior"), 7: ("Principal",)}

# ---------------------------------------------------------------------------------------------------------
# Noise: pool -> (train, held-out). "uk:" / "us:" prefix = only in documents of that locale.
# {org}, {city}, {n} and {tools} are filled in by the generator.
# ---------------------------------------------------------------------------------------------------------
NOISE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "company": ((
        "{org} is a B Corp on a mission to make energy bills fairer.",
        "We're a fast-growing SaaS scale-up with customers in 30 countries.",
        "uk:{org} is an NHS trust serving half a million people across the region.",
        "Founded in 2011, {org} helps small businesses get paid faster.",
        "uk:We are one of the largest housing associations in the north of England.",
        "us:{org} is a Series B startup building tools for independent pharmacies.",
        "Our charity supports young carers through grants and advice.",
        "uk:{org} is a FTSE 250 insurer with a growing digital team.",
        "us:We're a state agency modernizing how residents access public benefits.",
        "{org} runs the booking platform behind thousands of fitness studios.",
        "uk:We are a district council investing heavily in digital services.",
        "Our retail group operates 400 stores and a busy online shop.",
        "uk:{org} is a mutual building society owned by its members.",
        "We build logistics software that moves parcels for Europe's biggest retailers.",
        "us:{org} is a regional bank with branches across the Midwest.",
        "Our university employs 6,000 staff and teaches 30,000 students.",
    ), (
        "{org} makes payroll software for schools and colleges.",
        "us:We're a remote-first health tech company backed by leading investors.",
        "uk:We are a national charity working to end homelessness.",
        "{org} is a family-owned manufacturer with a new in-house tech team.",
        "Our firm advises hospitals on getting more from their data.",
    )),
    "benefits": ((
        "uk:We offer 28 days' holiday plus bank holidays.",
        "Benefits include private medical cover and a cycle-to-work scheme.",
        "uk:You'll get an annual learning budget of £1,500.",
        "us:Benefits include medical, dental and vision from day one, plus a 401(k) match.",
        "There's a generous pension with employer contributions of up to 8%.",
        "Enjoy enhanced parental leave and flexible working hours.",
        "We pay for professional certifications and exam fees.",
        "Perks include free breakfasts, a games room and regular socials.",
        "us:We offer unlimited PTO and a home office stipend.",
        "Everyone gets share options and a yearly bonus.",
        "We give two volunteering days a year.",
        "Access to an employee assistance programme is included.",
        "uk:We offer a defined benefit pension through the local government scheme.",
        "uk:Season ticket loans and an electric car scheme are available.",
    ), (
        "You'll have 30 days' annual leave that rises with service.",
        "us:Our plan covers 90% of health insurance premiums for you and your family.",
        "uk:Wellbeing allowance of £50 a month for gyms or classes.",
        "We close the office between Christmas and New Year.",
    )),
    "location": ((
        "uk:This role is based in our {city} office with hybrid working.",
        "Hybrid: two days a week in the office, the rest from home.",
        "us:This is a remote role open to candidates anywhere in the US.",
        "Fully remote, with occasional travel to team meet-ups.",
        "You'll be expected in the office three days a week.",
        "uk:Location: {city}, with some travel to our London site.",
        "us:Location: {city} (hybrid, Tuesday to Thursday on site).",
        "The team works mostly remotely and meets in person once a month.",
        "This is an on-site role because of the hardware involved.",
        "Core hours are 10am to 4pm; the rest is up to you.",
        "Some out-of-hours work is needed, paid as overtime.",
        "uk:Location: {city} or remote within the UK.",
    ), (
        "Office-first in {city}, with Fridays at home.",
        "us:Hybrid in {city}; relocation assistance is available.",
        "Remote-friendly, but you'll need to visit sites now and then.",
    )),
    "apply": ((
        "To apply, send your CV and a short cover letter.",
        "Applications close on {date}.",
        "We review applications as they arrive, so apply early.",
        "Interviews are a short call followed by a two-hour panel.",
        "Please tell us about any adjustments you need for the interview.",
        "Recruitment agencies need not apply.",
        "Questions? Email our talent team and we'll get back within two days.",
        "Our process has three stages and takes about three weeks.",
        "We'd love to hear from you even if you don't tick every box.",
        "Click apply and answer three short questions.",
    ), (
        "Send us a CV and a paragraph on why this role interests you.",
        "Shortlisted candidates will be invited to a video interview.",
        "The closing date may be brought forward if we get many applications.",
    )),
    "eeo": ((
        "We are an equal opportunities employer and welcome applicants from all backgrounds.",
        "uk:We are a Disability Confident employer.",
        "us:We are an Equal Opportunity Employer; all qualified applicants will be considered.",
        "uk:Unfortunately we cannot offer visa sponsorship for this role.",
        "us:Candidates must be authorized to work in the United States.",
        "uk:This post requires a basic DBS check.",
        "uk:Successful candidates will need SC clearance.",
        "We actively encourage applications from under-represented groups.",
    ), (
        "Everyone is welcome here, whatever their background.",
        "us:Sponsorship is not available for this position.",
        "uk:Appointment is subject to right-to-work checks.",
    )),
    "salary": ((
        "uk:Salary: £{lo},000 to £{hi},000 depending on experience.",
        "us:Compensation: ${lo},000 - ${hi},000 plus equity.",
        "uk:£{lo}k–£{hi}k plus bonus.",
        "us:Base pay range ${lo}k-${hi}k.",
        "Salary is competitive and reviewed every year.",
        "uk:Up to £{hi},000 for an exceptional candidate.",
    ), (
        "uk:Pay band: £{lo},000 to £{hi},000.",
        "us:Expected pay: ${lo},000 to ${hi},000 a year.",
    )),
    "culture": ((
        "We value curiosity, kindness and honest feedback.",
        "You'll join a friendly team that likes to share what it learns.",
        "We hold a hack week every quarter.",
        "Our teams choose their own ways of working.",
        "We care about sustainable pace and no heroics.",
        "You'll be working with some of the best people in the industry.",
        "We run monthly lunch-and-learns on all sorts of topics.",
        "Diversity of thought makes our products better.",
    ), (
        "We celebrate small wins and learn from our mistakes together.",
        "There's a strong culture of writing things down.",
    )),
    "soft_ad": ((
        "You'll need strong communication skills.",
        "A calm head under pressure is essential.",
        "We're looking for someone who is organised and detail-minded.",
        "You should enjoy explaining technical ideas to non-technical people.",
        "A full driving licence would be useful.",
        "A degree is nice to have but not essential.",
        "Experience in a regulated industry would be a bonus.",
        "You'll be comfortable juggling several priorities.",
    ), (
        "Good humour and patience will go a long way here.",
        "You enjoy working with people as much as with technology.",
    )),
    "duty_noise": ((
        "Take part in team ceremonies and quarterly planning.",
        "Contribute to our engineering blog now and then.",
        "Help interview candidates for other roles.",
        "Attend the monthly all-hands.",
        "Travel to our other offices a few times a year.",
        "Keep your own skills current with our learning budget.",
        "Represent the team at internal show-and-tells.",
    ), (
        "Join in with charity days and team socials.",
        "Share what you learn at our lunchtime talks.",
    )),
    "hobby": ((
        "Outside work I run half marathons and bake bread.",
        "I volunteer as a scout leader at weekends.",
        "In my spare time I play bass in a covers band.",
        "uk:I'm a keen cyclist and have ridden from Land's End to John o' Groats.",
        "I enjoy hiking, photography and board games.",
        "uk:I coach an under-11s football team.",
        "I'm learning Spanish and love to travel.",
        "uk:Away from the keyboard I grow vegetables on an allotment.",
        "I sing in a community choir.",
        "I play chess online and at a local club.",
    ), (
        "At weekends I climb indoors and go wild swimming.",
        "I restore old bikes and sell them for charity.",
        "I write short stories and read a lot of science fiction.",
    )),
    "education": ((
        "uk:BSc Computer Science, University of Leeds.",
        "uk:MSc Data Science, University of Bath.",
        "us:BS in Information Systems, Ohio State University.",
        "BA History, then a coding bootcamp.",
        "ITIL 4 Foundation certified.",
        "AWS Certified Solutions Architect – Associate.",
        "Prince2 Practitioner and Agile PM certified.",
        "CompTIA Security+ and Network+.",
        "us:MBA, University of Texas at Austin.",
        "uk:HND in Computing, Glasgow Kelvin College.",
    ), (
        "uk:BEng Electronic Engineering, University of Southampton.",
        "us:BA Economics, University of Michigan.",
        "Certified ScrumMaster and ISTQB Foundation.",
    )),
    "cv_soft": ((
        "Colleagues describe me as calm, curious and dependable.",
        "I'm happiest when I'm learning something new.",
        "I communicate clearly with technical and non-technical people.",
        "I'm available on one month's notice.",
        "I hold a full clean driving licence.",
        "I'm fluent in English and Polish.",
        "I'm looking for a hybrid role within commuting distance of {city}.",
        "References are available on request.",
    ), (
        "I enjoy mentoring and sharing what I know.",
        "I can start immediately.",
        "I'm open to relocation for the right role.",
    )),
    "cv_profile": ((
        "I'm {a_title} with {n} years' experience in {sector}.",
        "{title} with a background in {sector} and a love of tidy, well-documented work.",
        "Experienced {title} who has worked across {sector} and the public sector.",
        "I have spent {n} years in {sector}, most recently as {a_title}.",
        "Pragmatic {title}; {n} years in {sector}.",
    ), (
        "{A_title} by trade, with {n} years spent in {sector}.",
        "Career so far: {n} years in {sector}, currently working as {a_title}.",
    )),
}

ORG_PARTS = ((("Bramble", "Kestrel", "Copperfield", "Lumen", "Redwood", "Tidewater", "Ashgrove", "Northgate",
               "Silverline", "Harbourside", "Meridian", "Oakridge", "Fenwick", "Bluebell", "Larkspur", "Granite"),
              ("Bank", "Energy", "Logistics", "Health", "Insurance", "Labs", "Group", "Software", "Retail",
               "Housing", "Analytics", "Systems", "Telecom", "Foods")),
             (("Quillon", "Westmarch", "Pebblebrook", "Stonecroft", "Amberley", "Rowan"),
              ("Partners", "Technologies", "Holdings", "Digital")))
CITIES = {"uk": (("Leeds", "Manchester", "Bristol", "Glasgow", "Edinburgh", "Cardiff", "Birmingham", "Belfast",
                  "Newcastle", "Nottingham", "Sheffield", "Reading"), ("Norwich", "York", "Swansea")),
          "us": (("Austin", "Chicago", "Denver", "Boston", "Seattle", "Atlanta", "Raleigh", "Columbus", "Phoenix"),
                 ("Minneapolis", "Pittsburgh", "Portland"))}
SECTORS = (("retail", "fintech", "local government", "healthcare", "logistics", "insurance", "higher education",
            "the charity sector", "telecoms", "utilities", "e-commerce"), ("manufacturing", "media", "travel"))
NAMES = (("Priya", "Tom", "Aisha", "Daniel", "Megan", "Kwame", "Sofia", "Liam", "Chen", "Hannah", "Omar", "Grace",
          "Marek", "Zara", "Ben", "Ines"),
         ("Shah", "Okafor", "Walsh", "Novak", "Hughes", "Patel", "Reid", "Kowalski", "Evans", "Mensah", "Byrne",
          "Garcia", "Lam", "Fraser"))

# ---------------------------------------------------------------------------------------------------------
# UK / US spelling
# ---------------------------------------------------------------------------------------------------------
_ISE_STEMS = ("organ", "analy", "optim", "priorit", "categor", "recogn", "author", "production", "visual", "normal",
              "standard", "summar", "synthes", "minim", "maxim", "util", "final", "custom", "modern", "mobil",
              "special", "character", "capital", "emphas", "real", "stabil")
_PAIRS = [("programme", "program"), ("programmes", "programs"), ("licence", "license"), ("centre", "center"),
          ("centres", "centers"), ("behaviour", "behavior"), ("behaviours", "behaviors"), ("colour", "color"),
          ("favour", "favor"), ("labour", "labor"), ("neighbouring", "neighboring"), ("catalogue", "catalog"),
          ("defence", "defense"), ("modelling", "modeling"), ("modelled", "modeled"), ("modeller", "modeler"),
          ("labelled", "labeled"), ("labelling", "labeling"), ("travelling", "traveling"), ("judgement", "judgment"),
          ("fulfil", "fulfill"), ("enrol", "enroll"), ("cheque", "check"), ("organisational", "organizational"),
          ("analyse", "analyze"), ("analysed", "analyzed"), ("analysing", "analyzing"), ("visualisation", "visualization"),
          ("visualisations", "visualizations"), ("optimisation", "optimization"), ("organisation", "organization"),
          ("organisations", "organizations"), ("modernisation", "modernization"), ("prioritisation", "prioritization"),
          ("categorisation", "categorization"), ("authorisation", "authorization"), ("specialisation", "specialization"),
          ("normalisation", "normalization"), ("standardisation", "standardization"), ("realisation", "realization")]
for _s in _ISE_STEMS:
    for _uk, _us in (("ise", "ize"), ("ised", "ized"), ("ising", "izing"), ("ises", "izes")):
        _PAIRS.append((_s + _uk, _s + _us))
UK_TO_US: dict[str, str] = dict(_PAIRS)
US_TO_UK: dict[str, str] = {us: uk for uk, us in _PAIRS if us != "check" and us != "program"}
US_TO_UK.update({"program": "programme", "programs": "programmes"})  # canonical form only; never used to write text


_SWAP_RE: dict[int, re.Pattern] = {}


def _swap(text: str, table: dict[str, str]) -> str:
    pat = _SWAP_RE.get(id(table))
    if pat is None:
        pat = _SWAP_RE[id(table)] = re.compile(r"\b(?:" + "|".join(sorted(table, key=len, reverse=True)) + r")\b",
                                               re.IGNORECASE)

    def rep(m: re.Match) -> str:
        w = m.group(0)
        new = table[w.lower()]
        if w.isupper() and len(w) > 1:
            return new.upper()
        return new[0].upper() + new[1:] if w[0].isupper() else new
    return pat.sub(rep, text)


_TO_US = {k: v for k, v in UK_TO_US.items() if k != "cheque"}


def to_us(text: str) -> str:
    """US spelling of our (UK-spelt) text.

    >>> to_us("Analyse the organisation's programme of visualisation work")
    "Analyze the organization's program of visualization work"
    """
    return _swap(text, _TO_US)


def to_uk(text: str) -> str:
    """Canonical (UK) spelling, used only to compare texts whatever their spelling."""
    return _swap(text, US_TO_UK)


# ---------------------------------------------------------------------------------------------------------
# Rendering level statements, and the checkable phrases of the bank
# ---------------------------------------------------------------------------------------------------------
_VOICE = {
    "ad": {"You": "You", "you": "you", "you_obj": "you", "Your": "Your", "your": "your", "yourself": "yourself",
           "are": "are"},
    "me": {"You": "I", "you": "I", "you_obj": "me", "Your": "My", "your": "my", "yourself": "myself", "are": "am"},
    "me_past": {"You": "I", "you": "I", "you_obj": "me", "Your": "My", "your": "my", "yourself": "myself",
                "are": "was"},
}
_ALT = re.compile(r"\[([^|\]]+)\|([^\]]+)\]")


def render_statement(template: str, voice: str, area: str | None = None) -> str:
    """A level statement in voice "ad", "me" (present) or "me_past"; {area} filled when given.

    >>> render_statement("{You} [lead|led] a team and {are} accountable for {area}.", "me_past", "the data platform")
    'I led a team and was accountable for the data platform.'
    """
    t = _ALT.sub(lambda m: m.group(2) if voice == "me_past" else m.group(1), template)
    out = t
    for k, v in _VOICE[voice].items():
        out = out.replace("{" + k + "}", v)
    if area is not None:
        out = out.replace("{area}", area)
    return out


def statement_voices(voice: str) -> tuple[str, ...]:
    return {"both": ("ad", "me", "me_past"), "ad": ("ad",), "me": ("me_past",)}[voice]


def level_fragments(template: str, voice: str) -> list[str]:
    """The literal pieces of a rendered statement around its {area} slot (one piece when it has none)."""
    return [p.strip(" ,.;") for p in render_statement(template, voice).split("{area}") if p.strip(" ,.;")]


def activity_forms(phrase: str) -> list[str]:
    """Every form of an activity phrasing the generator can write (base, past, -ing), UK spelling."""
    return [inflect(phrase, f) for f in ("base", "past", "ing")]


def split_index(held_out: bool) -> int:
    return 1 if held_out else 0


def bank_phrases(held_out: bool = False, min_words: int = 4) -> list[str]:
    """The activity phrasings (all forms) and level statement / lead-in pieces of one side of the bank that
    have at least `min_words` words: what contamination checks look for in gold text (train side) or in
    training text (held-out side)."""
    k = split_index(held_out)
    out: list[str] = []
    for phrases in ACTIVITIES.values():
        for p in phrases[k]:
            out += activity_forms(p)
    for lv in LEVEL_STATEMENTS.values():
        for voice, tpl in lv[k]:
            for v in statement_voices(voice):
                out += level_fragments(tpl, v)
    for leads in LEVEL_LEADS.values():
        out += list(leads[k])
    seen, uniq = set(), []
    for p in out:
        if len(p.split()) >= min_words and p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def noise_items(held_out: bool = False) -> list[str]:
    """Every noise item of one side (locale tags stripped, slots left in)."""
    k = split_index(held_out)
    return [re.sub(r"^(uk|us):", "", s) for pools in NOISE.values() for s in pools[k]]


def level_markers(held_out: bool = False) -> dict[int, list[str]]:
    """level -> canonical text pieces (3+ words) that show a level statement or lead-in of that level was used:
    the longest literal piece of each statement in each voice, and each lead-in."""
    from sfia.contamination import canon  # here, not at the top: contamination imports this module

    k = split_index(held_out)
    out: dict[int, list[str]] = {}
    for lv in range(1, 8):
        marks = []
        for voice, tpl in LEVEL_STATEMENTS[lv][k]:
            for v in statement_voices(voice):
                marks.append(canon(max(level_fragments(tpl, v), key=len)))
        marks += [canon(x) for x in LEVEL_LEADS[lv][k]]
        out[lv] = sorted({m for m in marks if len(m.split()) >= 3})
    return out
