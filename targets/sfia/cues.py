"""The FIRST generator's vocabulary: the working skill subset, cue phrases and level cues (now retired).

The data generator no longer uses this file: since the phrase bank (sfia/phrasebank.py) replaced it, the
model stopped learning these 99 phrases verbatim. It stays because check_gold.py rejects realistic gold
that uses these phrases, and because tests check the phrase bank never reuses them. The text below
describes how the first generator used it.

Everything here is our own wording. Gold and training data share this vocabulary on purpose: mapping
"building and running data pipelines" to DENG, or "under close supervision" to level 1, is the domain
knowledge the model has to learn. What the two splits never share is sentence shape (see generate.py).

Why these 33 skills: they are the skills most often named in ordinary IT job adverts (software, data,
infrastructure, service management, security, delivery, user-centred design, customer and supplier work,
strategy), each has an activity that reads unambiguously in one sentence, and together they span all six
SFIA categories. Skills whose everyday wording overlaps a chosen one were left out (BINT vs VISL/DAAN,
VUAS vs PENT, CFMG vs CHMG, DEPL vs RELM) so one sentence maps to one code. 33 skills x 3 phrases is
small enough for a 135M model to learn in about an hour of CPU LoRA while staying far from trivial.

Cue phrases are gerund phrases of at least three words (they are the evidence and must fit "be {x}",
"responsible for {x}", "experience {x}"); none contains an SFIA code as a word.
"""
from __future__ import annotations

# code -> (cue phrases, job titles that fit)
SKILL_CUES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "PROG": (("writing and maintaining application code", "programming new software features",
              "fixing defects in production code"), ("software engineer", "developer", "backend engineer")),
    "SWDN": (("designing software components and interfaces", "producing detailed software design specifications",
              "choosing design patterns for new modules"), ("software designer", "senior developer", "software engineer")),
    "TEST": (("running functional testing cycles", "checking features against their specifications",
              "writing automated functional checks"), ("QA engineer", "quality analyst", "testing specialist")),
    "ARCH": (("shaping the end-to-end solution architecture", "defining technical architectures for new solutions",
              "reviewing solution designs against architecture principles"), ("solution architect", "technical architect")),
    "DBAD": (("administering production databases", "tuning database performance and backups",
              "managing database users and indexes"), ("database administrator", "DBA", "database engineer")),
    "DTAN": (("building logical data models", "modelling entities and their relationships",
              "documenting data definitions and schemas"), ("data modeller", "data architect", "information analyst")),
    "DENG": (("building and running data pipelines", "developing batch and streaming ingestion jobs",
              "engineering data flows into the warehouse"), ("data engineer", "analytics engineer", "ETL developer")),
    "DAAN": (("analysing business data to find trends", "producing statistical analyses of operational data",
              "turning raw data into actionable insights"), ("data analyst", "insight analyst", "reporting analyst")),
    "DATS": (("applying data science methods to business problems", "building predictive statistical models",
              "running experiments on large datasets"), ("data scientist", "research scientist", "quantitative analyst")),
    "MLNG": (("training and evaluating machine learning models", "deploying machine learning models to production",
              "tuning neural network hyperparameters"), ("machine learning engineer", "ML engineer", "AI engineer")),
    "VISL": (("building interactive dashboards for managers", "creating charts and data visualisations",
              "designing visual reports for executives"), ("BI developer", "visualisation specialist", "data analyst")),
    "ITOP": (("monitoring servers and infrastructure health", "running routine infrastructure operations tasks",
              "operating data centre hardware"), ("infrastructure engineer", "operations technician", "IT operator")),
    "NTAS": (("resolving network connectivity faults", "maintaining routers, switches and firewalls",
              "supporting the corporate network for users"), ("network engineer", "network technician", "network support analyst")),
    "NTDS": (("designing enterprise network topologies", "planning network capacity and routing designs",
              "specifying network architecture for new sites"), ("network architect", "network designer", "network engineer")),
    "SYSP": (("administering Linux and Windows servers", "installing and configuring operating system software",
              "maintaining system software and patches"), ("systems administrator", "sysadmin", "platform engineer")),
    "USUP": (("handling service incidents and outages", "restoring service after major incidents",
              "logging and prioritising incident tickets"), ("incident manager", "service desk analyst", "operations analyst")),
    "PBMG": (("investigating root causes of recurring problems", "running problem management reviews",
              "preventing repeat incidents through permanent fixes"), ("problem manager", "service analyst", "support engineer")),
    "CHMG": (("assessing and approving change requests", "running the change advisory board",
              "controlling changes to live services"), ("change manager", "change analyst", "service manager")),
    "RELM": (("planning and coordinating software releases", "managing the release calendar",
              "packaging releases for deployment"), ("release manager", "release engineer", "DevOps engineer")),
    "SCTY": (("defining information security policies", "managing the information security programme",
              "advising on security controls and standards"), ("security manager", "information security officer", "CISO")),
    "SCAD": (("monitoring security alerts in the operations centre", "responding to security events and intrusions",
              "running security operations procedures"), ("security analyst", "SOC analyst", "cyber defence analyst")),
    "PENT": (("carrying out penetration tests on web applications", "performing ethical hacking engagements",
              "simulating attacks to expose vulnerabilities"), ("penetration tester", "ethical hacker", "offensive security consultant")),
    "IAMT": (("managing user accounts and access rights", "administering identity and access tooling",
              "reviewing privileged access permissions"), ("identity analyst", "access management specialist", "IAM engineer")),
    "PRMG": (("managing project plans, budgets and risks", "leading delivery of projects to time and cost",
              "running project governance and status reporting"), ("project manager", "delivery lead", "project lead")),
    "REQM": (("eliciting and documenting business requirements", "managing requirements through the change lifecycle",
              "prioritising user stories with stakeholders"), ("business analyst", "requirements analyst", "product analyst")),
    "BUSA": (("analysing business situations to recommend options", "mapping current business processes and pain points",
              "investigating business problems with stakeholders"), ("business analyst", "business consultant", "process analyst")),
    "HCEV": (("designing user interfaces and interaction flows", "creating wireframes and interactive prototypes",
              "improving the usability of digital services"), ("UX designer", "interaction designer", "product designer")),
    "URCH": (("conducting user interviews and field studies", "planning user research sessions",
              "synthesising findings from user research"), ("user researcher", "UX researcher", "design researcher")),
    "CSMG": (("answering customer queries on the service desk", "helping customers resolve product issues",
              "handling customer support requests"), ("customer support agent", "service desk agent", "support advisor")),
    "SLMO": (("agreeing service level targets with customers", "monitoring performance against service level agreements",
              "reporting service level breaches"), ("service level manager", "service delivery manager", "account manager")),
    "SUPP": (("managing supplier performance and contracts", "negotiating with third-party suppliers",
              "reviewing vendor service delivery"), ("supplier manager", "vendor manager", "procurement lead")),
    "BURM": (("identifying and assessing business risks", "maintaining the risk register",
              "planning risk mitigation actions"), ("risk manager", "risk analyst", "governance lead")),
    "ITSP": (("developing the organisation's technology strategy", "aligning business plans with strategic objectives",
              "preparing strategic plans for senior leadership"), ("head of strategy", "strategy manager", "chief technology officer")),
}

# level -> adverbial phrases that fit at the end of a clause or (capitalised) at its start.
LEVEL_CUES: dict[int, tuple[str, ...]] = {
    1: ("under close supervision", "following detailed instructions", "with every step checked by a mentor"),
    2: ("under routine direction", "with regular guidance from a lead", "in a supporting role"),
    3: ("with general direction", "with some autonomy on routine problems", "on own initiative within agreed plans"),
    4: ("with broad direction", "independently while guiding junior colleagues", "with substantial personal responsibility"),
    5: ("with full accountability for outcomes", "as the accountable lead and adviser",
        "while ensuring standards across several teams"),
    6: ("with organisation-wide influence", "while shaping policy for the whole organisation",
        "as the senior leader who initiates major change"),
    7: ("at the highest level of the enterprise", "while setting strategy for the entire organisation",
        "with authority to inspire and mobilise the whole enterprise"),
}
