"""PromptDFD: prompting to distill (IJCAI-ECAI'22, arXiv 2205.07523); code not public: a reconstruction."""
